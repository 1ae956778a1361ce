//! A CoAP client and server in one process over smoltcp's loopback device: no
//! hardware, no OS sockets, and a simulated clock, the way the crate runs on a
//! microcontroller.
//!
//! ```text
//! cargo run --features std,smoltcp --example smoltcp_loopback
//! ```
//! (`std` only for printing and for smoltcp's `Loopback`, which needs `alloc`; the
//! driver itself builds with `--no-default-features --features smoltcp`.)
use coap_proto::smoltcp::drive;
use coap_proto::wire::Code;
use coap_proto::{Config, Endpoint, Incoming, RequestOptions};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

fn udp_socket(port: u16) -> udp::Socket<'static> {
    let buffer =
        || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1280]);
    let mut socket = udp::Socket::new(buffer(), buffer());
    socket.bind(port).expect("bind");
    socket
}

fn main() {
    let mut device = Loopback::new(Medium::Ip);
    let mut now = Instant::from_millis(0);
    let mut iface = Interface::new(IfaceConfig::new(HardwareAddress::Ip), &mut device, now);
    iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap());
    let mut sockets = SocketSet::new(vec![]);
    let server_socket = sockets.add(udp_socket(5683));
    let client_socket = sockets.add(udp_socket(49152));
    let server_addr = IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), 5683);

    let mut server: Box<Endpoint<IpEndpoint>> = Box::new(
        Endpoint::new(Config {
            seed: 1,
            ..Config::default()
        })
        .unwrap(),
    );
    let mut client: Box<Endpoint<IpEndpoint>> = Box::new(
        Endpoint::new(Config {
            seed: 2,
            ..Config::default()
        })
        .unwrap(),
    );
    let big: Vec<u8> = (0..3000u32).map(|i| b'A' + (i % 26) as u8).collect();
    let opts = RequestOptions {
        block2_szx: Some(4),
        ..RequestOptions::default()
    };
    let t = coap_proto::smoltcp::instant(now);
    client
        .request(t, server_addr, Code::GET, &opts, |b| {
            b.uri_path("/hello").map(drop)
        })
        .unwrap();
    client
        .request(t, server_addr, Code::GET, &opts, |b| {
            b.uri_path("/big").map(drop)
        })
        .unwrap();
    // And observe /count (RFC 7641), which the server changes every 100 ms.
    let observe = RequestOptions {
        observe: true,
        ..RequestOptions::default()
    };
    let observation = client
        .request(t, server_addr, Code::GET, &observe, |b| {
            b.uri_path("/count").map(drop)
        })
        .unwrap();
    let mut count = 0u8;
    let mut notifications = Vec::new();

    let (mut answers, mut body) = (0, Vec::new());
    let mut buf = [0u8; 1280];
    // Simulated time: 1 ms per turn, at most 10 s.
    for _ in 0..10_000 {
        iface.poll(now, &mut device, &mut sockets);
        drive(
            &mut server,
            sockets.get_mut::<udp::Socket>(server_socket),
            now,
            &mut buf,
            |ep, incoming| {
                if let Incoming::Request { handle, message } = incoming {
                    let t = coap_proto::smoltcp::instant(now);
                    if message.uri_path().matches("/hello") {
                        ep.respond(t, handle, Code::CONTENT, |b| {
                            b.payload(b"Hello over smoltcp").map(drop)
                        })
                        .unwrap();
                    } else if message.uri_path().matches("/count") {
                        ep.respond_observe(t, handle, 0, Code::CONTENT, |b| {
                            b.payload(&[count]).map(drop)
                        })
                        .unwrap();
                    } else if message.uri_path().matches("/big") {
                        ep.respond_block2(t, handle, &message, Code::CONTENT, &big, |_| Ok(()))
                            .unwrap();
                    } else {
                        ep.respond(t, handle, Code::NOT_FOUND, |_| Ok(())).unwrap();
                    }
                }
            },
            |_, event| println!("server: {event}"),
        );
        iface.poll(now, &mut device, &mut sockets);
        drive(
            &mut client,
            sockets.get_mut::<udp::Socket>(client_socket),
            now,
            &mut buf,
            |_, incoming| {
                if let Incoming::Response {
                    handle,
                    message,
                    block,
                } = incoming
                {
                    if handle == observation {
                        println!("client: notification {:?}", message.payload());
                        notifications.push(message.payload()[0]);
                        return;
                    }
                    match block {
                        Some(b) => {
                            println!(
                                "client: {} block at {} ({} bytes{})",
                                message.code(),
                                b.offset,
                                message.payload().len(),
                                if b.last { ", last" } else { "" }
                            );
                            body.extend_from_slice(message.payload());
                            answers += usize::from(b.last);
                        }
                        None => {
                            println!(
                                "client: {} {:?}",
                                message.code(),
                                core::str::from_utf8(message.payload()).unwrap_or("?")
                            );
                            answers += 1;
                        }
                    }
                }
            },
            |_, event| println!("client: {event}"),
        );
        if answers == 2 && notifications.len() >= 4 {
            break;
        }
        now += Duration::from_millis(1);
        if now.total_millis() % 100 == 0 {
            count += 1;
            let t = coap_proto::smoltcp::instant(now);
            server
                .notify(t, 0, false, Code::CONTENT, |b| {
                    b.payload(&[count]).map(drop)
                })
                .unwrap();
        }
    }
    assert_eq!(answers, 2, "both responses arrived");
    assert!(
        notifications.len() >= 4 && notifications.windows(2).all(|w| w[0] < w[1]),
        "the observation's states, newer and newer: {notifications:?}"
    );
    assert_eq!(body, big, "the block-wise body arrived whole");
    println!(
        "done at {now}: /hello, {} bytes of /big and {} notifications of /count over smoltcp's loopback",
        body.len(),
        notifications.len()
    );
}
