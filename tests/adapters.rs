//! The conveniences of the std and tokio adapters, each proven over 127.0.0.1: queueing
//! beyond capacity, queries in paths, URIs and socket errors, caller-made sockets, one
//! socket for both roles, counters, and one handler type for both servers.
#![cfg(feature = "tokio")]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coap_proto::net::blocking;
use coap_proto::net::tokio as adapter;
use coap_proto::net::{Error, Request, Response};
use coap_proto::resource::{Methods, Resource};
use coap_proto::{Config, TransmissionParams};

/// A single-threaded tokio runtime for a test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One handler for both servers: it echoes what it was asked.
fn describe(req: &Request) -> Response {
    Response::content(format!(
        "{} {} {}",
        req.method,
        req.path,
        req.query.join("&")
    ))
}

/// A blocking server with `/describe` and `/q` (both `describe`) on a free port.
fn blocking_server() -> (SocketAddr, blocking::ServerHandle) {
    let mut server = blocking::Server::bind("127.0.0.1:0").unwrap();
    server.resource(Resource::new("/describe", Methods::GET), |r| {
        describe(r).into()
    });
    server.resource(Resource::new("/q", Methods::GET), |r| describe(r).into());
    let (addr, handle) = (server.local_addr(), server.handle());
    std::thread::spawn(move || server.run());
    (addr, handle)
}

#[test]
fn blocking_and_tokio_handlers_take_the_request_the_same_way() {
    let (addr, _) = blocking_server();
    let rt = runtime();
    rt.block_on(async {
        let mut server = adapter::Server::bind("127.0.0.1:0").await.unwrap();
        // The very function the blocking server runs.
        server.resource(Resource::new("/describe", Methods::GET), |r| {
            describe(r).into()
        });
        let tokio_addr = server.local_addr().unwrap();
        tokio::spawn(server.run());
        let c = adapter::Client::connect(tokio_addr).await.unwrap();
        let from_tokio = c.get("/describe?x=1").await.unwrap();
        let c = adapter::Client::connect(addr).await.unwrap();
        let from_blocking = c.get("/describe?x=1").await.unwrap();
        assert_eq!(from_tokio.payload, b"GET /describe x=1");
        assert_eq!(from_tokio.payload, from_blocking.payload);
    });
}

#[test]
fn a_path_with_a_query_sends_uri_query_options() {
    let (addr, _) = blocking_server();
    let mut c = blocking::Client::connect(addr).unwrap();
    let r = c.get("/q?a=1&b").unwrap();
    assert_eq!(r.payload, b"GET /q a=1&b");
    let r = c.request(&Request::get("/q?a=1").query("c=3")).unwrap();
    assert_eq!(r.payload, b"GET /q a=1&c=3");
}

#[test]
fn connect_takes_a_coap_uri_and_socket_errors_keep_their_message() {
    let (addr, _) = blocking_server();
    let uri = format!("coap://127.0.0.1:{}/ignored", addr.port());
    let mut c = blocking::Client::connect(uri.as_str()).unwrap();
    assert_eq!(c.peer(), addr);
    assert_eq!(c.get("/q").unwrap().payload, b"GET /q ");
    assert!(matches!(
        blocking::Client::connect("coaps://127.0.0.1"),
        Err(Error::Uri(_))
    ));

    // The port is taken: the error says so in the OS's words, not just its kind.
    let e = blocking::Server::bind(addr)
        .err()
        .expect("the port is in use");
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::AddrInUse));
    let text = e.to_string().to_lowercase();
    assert!(text.contains("in use"), "{text}");
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn adapters_run_on_sockets_the_caller_made() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_ttl(7).unwrap();
    let local = socket.local_addr().unwrap();
    let mut server = blocking::Server::from_socket(socket, Config::default()).unwrap();
    server.resource(Resource::new("/q", Methods::GET), |r| describe(r).into());
    assert_eq!(server.local_addr(), local);
    std::thread::spawn(move || server.run());

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client_addr = socket.local_addr().unwrap();
    let mut c = blocking::Client::from_socket(socket, local, Config::default()).unwrap();
    assert_eq!(c.local_addr().unwrap(), client_addr);
    assert_eq!(c.get("/q").unwrap().payload, b"GET /q ");

    let rt = runtime();
    rt.block_on(async {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tokio_local = socket.local_addr().unwrap();
        let mut server = adapter::Server::from_socket(socket, Config::default()).unwrap();
        server.resource(Resource::new("/q", Methods::GET), |r| describe(r).into());
        assert_eq!(server.local_addr().unwrap(), tokio_local);
        tokio::spawn(server.run());
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let c = adapter::Client::from_socket(socket, tokio_local, Config::default()).unwrap();
        assert_eq!(c.get("/q").await.unwrap().payload, b"GET /q ");
    });
}

#[test]
fn one_socket_serves_and_asks() {
    // Two blocking servers that ask each other from their own ports.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut a = blocking::Server::bind("127.0.0.1:0").unwrap();
    let s = seen.clone();
    a.resource(Resource::new("/who", Methods::GET), move |r| {
        s.lock().unwrap().push(r.peer.unwrap());
        Response::content("a").into()
    });
    let (a_addr, a_handle) = (a.local_addr(), a.handle());
    std::thread::spawn(move || a.run());
    let mut b = blocking::Server::bind("127.0.0.1:0").unwrap();
    b.resource(Resource::new("/who", Methods::GET), |_| {
        Response::content("b").into()
    });
    let (b_addr, b_handle) = (b.local_addr(), b.handle());
    std::thread::spawn(move || b.run());

    let r = b_handle.request_to(a_addr, Request::get("/who")).unwrap();
    assert_eq!(r.payload, b"a");
    assert_eq!(
        *seen.lock().unwrap(),
        [b_addr],
        "asked from b's serving port"
    );
    let r = a_handle.request_to(b_addr, Request::get("/who")).unwrap();
    assert_eq!(r.payload, b"b");

    // The tokio server does the same through its `client`.
    let rt = runtime();
    rt.block_on(async {
        let mut server = adapter::Server::bind("127.0.0.1:0").await.unwrap();
        server.resource(Resource::new("/who", Methods::GET), |_| {
            Response::content("tokio").into()
        });
        let t_addr = server.local_addr().unwrap();
        let client = server.client(a_addr);
        tokio::spawn(server.run());
        assert_eq!(client.get("/who").await.unwrap().payload, b"a");
        assert_eq!(seen.lock().unwrap().last(), Some(&t_addr));
        // And it still serves (asked from another thread: this one runs the server).
        let r =
            tokio::task::spawn_blocking(move || b_handle.request_to(t_addr, Request::get("/who")));
        assert_eq!(r.await.unwrap().unwrap().payload, b"tokio");
    });
}

#[test]
fn clients_and_servers_report_their_counters() {
    // A duplicate CON to a blocking server is counted there.
    let (addr, handle) = blocking_server();
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let req = [0x40, 0x01, 0x12, 0x34, 0xb1, b'q'];
    let mut buf = [0u8; 64];
    for _ in 0..2 {
        raw.send_to(&req, addr).unwrap();
        raw.recv_from(&mut buf).unwrap();
    }
    assert_eq!(handle.stats().unwrap().duplicates, 1);

    // Retransmissions of a client whose server is silent are counted by the client.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let fast = Config {
        params: TransmissionParams {
            ack_timeout: Duration::from_millis(20),
            max_retransmit: 2,
            ..TransmissionParams::RFC7252
        },
        ..Config::default()
    };
    let mut c = blocking::Client::with_config(silent.local_addr().unwrap(), fast).unwrap();
    assert_eq!(c.get("/x"), Err(Error::TimedOut));
    assert_eq!(c.stats().retransmissions, 2);
    let rt = runtime();
    rt.block_on(async {
        let c = adapter::Client::with_config(silent.local_addr().unwrap(), fast)
            .await
            .unwrap();
        assert_eq!(c.get("/x").await, Err(Error::TimedOut));
        assert_eq!(c.stats().await.unwrap().retransmissions, 2);
    });
}

#[test]
fn tokio_client_queues_what_the_endpoint_cannot_hold() {
    let rt = runtime();
    rt.block_on(async {
        let order = Arc::new(Mutex::new(Vec::new()));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut server = adapter::Server::bind("127.0.0.1:0").await.unwrap();
        let (o, n) = (order.clone(), runs.clone());
        server.resource_async(Resource::new("/slow", Methods::GET), move |req| {
            o.lock().unwrap().push(req.query.join(""));
            n.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Response::content("done")
            }
        });
        server.resource(Resource::new("/fast", Methods::GET), |_| {
            Response::content("ok").into()
        });
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.run());

        // 100 at once through the default client: none refused.
        let c = adapter::Client::connect(addr).await.unwrap();
        let all = (0..100).map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("/fast").await })
        });
        for r in futures_join(all.collect()).await {
            assert_eq!(r.unwrap().payload, b"ok");
        }

        // Room for 2 at once: the others wait in their order; a dropped one never goes.
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let small = adapter::Client::from_socket_sized::<2, 4, 1152, 16, 4096>(
            socket,
            addr,
            Config {
                params: TransmissionParams {
                    nstart: 2,
                    ..TransmissionParams::RFC7252
                },
                ..Config::default()
            },
        )
        .unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let c = small.clone();
            tasks.push(tokio::spawn(
                async move { c.get(&format!("/slow?{i}")).await },
            ));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Request 4 waits behind 0..=3; give up on it before its turn.
        tasks.remove(4).abort();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().payload, b"done");
        }
        assert_eq!(*order.lock().unwrap(), ["0", "1", "2", "3", "5"]);
        assert_eq!(runs.load(Ordering::SeqCst), 5);
    });
}

/// Awaits every task (no futures crate here).
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Sends 3 CON GETs for `/wait` from one socket; returns the code of the first answer
/// to each (0.00 for an empty ACK).
fn three_waiting_requests(addr: SocketAddr) -> Vec<u8> {
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut codes = Vec::new();
    let mut buf = [0u8; 64];
    for mid in 1..=3u8 {
        let req = [0x41, 0x01, 0, mid, mid, 0xb4, b'w', b'a', b'i', b't'];
        raw.send_to(&req, addr).unwrap();
        let (_, _) = raw.recv_from(&mut buf).unwrap();
        assert_eq!(buf[3], mid);
        codes.push(buf[1]);
    }
    codes
}

/// A handler that never answers: every request waits, holding its record.
fn never_answers() -> impl FnMut(&Request) -> blocking::Reply + Send + 'static {
    let held = Arc::new(Mutex::new(Vec::new()));
    move |_| {
        let held = held.clone();
        blocking::Reply::later(move |r| held.lock().unwrap().push(r))
    }
}

#[test]
fn blocking_capacities_are_const_parameters() {
    // The default: 64 records, all three wait (empty ACKs).
    let mut default = blocking::Server::bind("127.0.0.1:0").unwrap();
    default.resource(Resource::new("/wait", Methods::GET), never_answers());
    let addr = default.local_addr();
    std::thread::spawn(move || default.run());
    assert_eq!(three_waiting_requests(addr), [0x00, 0x00, 0x00]);

    // 3 records, 2 of them kept for answers given at once: one may wait; the others
    // are refused with 5.03 rather than run out the table.
    type Tiny = blocking::Server<3, 5, 1152, 16, 4096>;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut tiny = Tiny::from_socket_sized(socket, Config::default()).unwrap();
    tiny.resource(Resource::new("/wait", Methods::GET), never_answers());
    let addr = tiny.local_addr();
    std::thread::spawn(move || tiny.run());
    assert_eq!(three_waiting_requests(addr), [0x00, 0xa3, 0xa3]);
}

#[test]
fn observable_resources_notify_blocking_and_tokio_observers() {
    let mut server = blocking::Server::bind("127.0.0.1:0").unwrap();
    let state = Arc::new(Mutex::new(0u32));
    let s = state.clone();
    let counter = server.observable(Resource::new("/n", Methods::GET), move |_| {
        Response::content(s.lock().unwrap().to_string()).into()
    });
    let addr = server.local_addr();
    let handle = server.handle();
    std::thread::spawn(move || server.run());
    // The resource changes 10 times, 50 ms apart.
    let s = state.clone();
    std::thread::spawn(move || {
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(50));
            let mut n = s.lock().unwrap();
            *n += 1;
            counter.notify(Response::content(n.to_string()));
        }
        // A final state that ends the observations (RFC 7641 §4.2).
        counter.notify(Response::new(coap_proto::wire::Code::NOT_FOUND));
    });

    // A tokio observer, on its own runtime thread.
    let tokio_seen = std::thread::spawn(move || {
        runtime().block_on(async move {
            let c = adapter::Client::connect(addr).await.unwrap();
            let mut o = c.observe(Request::get("/n")).await.unwrap();
            let mut seen = Vec::new();
            while let Some(n) = o.next().await {
                seen.push(n);
            }
            o.end().await.unwrap();
            seen
        })
    });

    // A blocking observer.
    let mut c = blocking::Client::connect(addr).unwrap();
    let mut seen = Vec::new();
    c.observe(&Request::get("/n"), Some(Duration::from_secs(5)), |n| {
        seen.push(n.clone());
        true
    })
    .unwrap();
    for seen in [seen, tokio_seen.join().unwrap()] {
        let last = seen.last().unwrap();
        assert_eq!(last.code, coap_proto::wire::Code::NOT_FOUND, "{seen:?}");
        let values: Vec<u32> = seen[..seen.len() - 1]
            .iter()
            .map(|n| n.payload_str().unwrap().parse().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
        assert_eq!(
            values.last(),
            Some(&10),
            "the latest state arrived: {values:?}"
        );
    }
    assert_eq!(handle.stats().unwrap().retransmissions, 0);
}

#[test]
fn block_wise_notifications_arrive_whole_and_never_mixed() {
    // A 3000-byte representation: every byte is the state's number.
    let mut server = blocking::Server::bind("127.0.0.1:0").unwrap();
    let state = Arc::new(Mutex::new(1u8));
    let s = state.clone();
    let big = server.observable(Resource::new("/big", Methods::GET), move |_| {
        Response::content(vec![*s.lock().unwrap(); 3000]).into()
    });
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());
    let s = state.clone();
    std::thread::spawn(move || {
        for k in 2..=12u8 {
            // Some changes come faster than a notification's blocks can be fetched.
            std::thread::sleep(Duration::from_millis(if k % 3 == 0 { 1 } else { 60 }));
            *s.lock().unwrap() = k;
            big.notify(Response::content(vec![k; 3000]));
        }
    });
    let mut c = blocking::Client::connect(addr).unwrap();
    let mut seen = Vec::new();
    c.observe(&Request::get("/big"), Some(Duration::from_secs(3)), |n| {
        assert_eq!(n.payload.len(), 3000, "whole");
        let k = n.payload[0];
        assert!(n.payload.iter().all(|&b| b == k), "one state, not a mix");
        seen.push(k);
        k < 12
    })
    .unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&12), "the latest state arrived: {seen:?}");
}

#[test]
fn an_observer_registers_again_when_max_age_runs_out() {
    // A resource that never notifies and says its state is good for 1 s.
    let mut server = blocking::Server::bind("127.0.0.1:0").unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let _quiet = server.observable(Resource::new("/quiet", Methods::GET), move |_| {
        r.fetch_add(1, Ordering::SeqCst);
        Response::content("same").max_age(1).into()
    });
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());
    let mut c = blocking::Client::connect(addr).unwrap();
    let mut got = 0;
    let req = Request::get("/quiet").reregister();
    c.observe(&req, Some(Duration::from_millis(3500)), |_| {
        got += 1;
        true
    })
    .unwrap();
    // The registration, then one again after each Max-Age: at 1, 2 and 3 s; and the
    // end, a GET with Observe: 1 (RFC 7641 §3.6), which the server answers as a GET.
    assert_eq!((got, runs.load(Ordering::SeqCst)), (4, 5));
    // Without asking, one answer only.
    let mut got = 0;
    c.observe(
        &Request::get("/quiet"),
        Some(Duration::from_millis(1500)),
        |_| {
            got += 1;
            true
        },
    )
    .unwrap();
    assert_eq!(got, 1);
    // The tokio client does the same.
    let got = runtime().block_on(async move {
        let c = adapter::Client::connect(addr).await.unwrap();
        let mut o = c
            .observe(Request::get("/quiet").reregister())
            .await
            .unwrap();
        let mut got = 0;
        let _ = tokio::time::timeout(Duration::from_millis(2500), async {
            while o.next().await.is_some() {
                got += 1;
            }
        })
        .await;
        got
    });
    assert_eq!(got, 3, "at 0, 1 and 2 s");
}
