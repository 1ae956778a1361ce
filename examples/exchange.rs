//! A client endpoint and a server endpoint talking over real UDP sockets on 127.0.0.1,
//! each driven by the documented run loop. The client sends a GET (answered
//! piggybacked), a POST (echoed back), a GET for a 3000-byte resource (transferred in
//! 512-byte blocks, RFC 7959) and a GET that the server answers later as a separate
//! response, then pings the server.
//!
//! ```text
//! cargo run --example exchange
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use coap_proto::wire::{Code, ContentFormat, Message};
use coap_proto::{Config, Endpoint, Event, Incoming, Instant, Output, RequestOptions};

/// The endpoint's clock: microseconds since the program started.
fn now(start: StdInstant) -> Instant {
    Instant::from_micros(start.elapsed().as_micros() as u64)
}

/// What one turn of the run loop hands to the application.
enum Happened<'a> {
    Incoming(Incoming<'a>),
    Event(Event),
}

/// One turn of the run loop: drain `poll_output`, then wait for a datagram or the next
/// deadline (at most `max_wait`) and hand what happened to `on`.
fn turn(
    ep: &mut Endpoint,
    socket: &UdpSocket,
    start: StdInstant,
    max_wait: Duration,
    mut on: impl FnMut(&mut Endpoint, Happened<'_>),
) -> std::io::Result<()> {
    let deadline = loop {
        match ep.poll_output(now(start)) {
            Output::Transmit(t) => {
                socket.send_to(t.data, t.to)?;
            }
            Output::Event(e) => on(ep, Happened::Event(e)),
            Output::Timeout(t) => break t,
        }
    };
    let wait = deadline.map_or(max_wait, |d| (d - now(start)).min(max_wait));
    socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
    let mut buf = [0u8; 1500];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) => {
            if let Some(incoming) = ep.handle_datagram(now(start), from, &buf[..n]) {
                on(ep, Happened::Incoming(incoming));
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            ep.handle_timeout(now(start));
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

fn server(socket: UdpSocket, start: StdInstant, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut ep: Endpoint = Endpoint::new(Config {
        seed: 0x5e7e,
        ..Config::default()
    })
    .expect("default parameters are valid");
    // Requests answered later: (when, handle).
    let mut later = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = now(start);
        for (due, handle) in std::mem::take(&mut later) {
            if due <= t {
                ep.respond(t, handle, Code::CONTENT, |b| {
                    b.content_format(ContentFormat::TEXT_PLAIN)?;
                    b.payload(b"this took a while")?;
                    Ok(())
                })
                .expect("respond to a deferred request");
            } else {
                later.push((due, handle));
            }
        }
        turn(
            &mut ep,
            &socket,
            start,
            Duration::from_millis(20),
            |ep, happened| {
                let Happened::Incoming(Incoming::Request { handle, message }) = happened else {
                    if let Happened::Event(e) = happened {
                        println!("  server: {e}");
                    }
                    return;
                };
                println!("  server got  {message}");
                let t = now(start);
                let answered = if message.uri_path().matches("/hello") {
                    ep.respond(t, handle, Code::CONTENT, |b| {
                        b.content_format(ContentFormat::TEXT_PLAIN)?;
                        b.payload(b"Hello, CoAP!")?;
                        Ok(())
                    })
                } else if message.uri_path().matches("/echo") {
                    ep.respond(t, handle, Code::CHANGED, |b| {
                        b.payload(message.payload())?;
                        Ok(())
                    })
                } else if message.uri_path().matches("/big") {
                    // Served block by block: the endpoint picks the slice each request asks for.
                    let body: Vec<u8> = (0..3000).map(|i| b"coap-proto "[i % 11]).collect();
                    ep.respond_block2(t, handle, &message, Code::CONTENT, &body, |b| {
                        b.etag(&[0x01, 0x02])?;
                        Ok(())
                    })
                } else if message.uri_path().matches("/slow") {
                    // Not answered now: the endpoint sends an empty ACK, and the answer
                    // follows as a separate response.
                    later.push((t + Duration::from_millis(300), handle));
                    Ok(())
                } else {
                    ep.respond(t, handle, Code::NOT_FOUND, |_| Ok(()))
                };
                answered.expect("respond");
            },
        )?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = StdInstant::now();
    let server_socket = UdpSocket::bind("127.0.0.1:0")?;
    let server_addr: SocketAddr = server_socket.local_addr()?;
    let client_socket = UdpSocket::bind("127.0.0.1:0")?;
    let stop = Arc::new(AtomicBool::new(false));
    let server_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || server(server_socket, start, stop))
    };
    println!(
        "server on {server_addr}, client on {}",
        client_socket.local_addr()?
    );

    let mut client: Endpoint = Endpoint::new(Config {
        seed: 0xc11e,
        ..Config::default()
    })?;
    let requests: [(Code, &str, &[u8]); 4] = [
        (Code::GET, "/hello", b""),
        (Code::POST, "/echo", b"ping from the client"),
        (Code::GET, "/big", b""),
        (Code::GET, "/slow", b""),
    ];
    let mut failures = 0;
    for (method, path, body) in requests {
        let t = now(start);
        // Ask for 512-byte blocks should the response come block-wise.
        let options = RequestOptions {
            block2_szx: Some(5),
            ..RequestOptions::default()
        };
        let handle = client.request(t, server_addr, method, &options, |b| {
            b.uri_path(path)?;
            if !body.is_empty() {
                b.payload(body)?;
            }
            Ok(())
        })?;
        println!("{method} {path}");
        let mut done = false;
        let mut received = 0;
        let give_up = StdInstant::now() + Duration::from_secs(10);
        while !done && StdInstant::now() < give_up {
            turn(
                &mut client,
                &client_socket,
                start,
                Duration::from_millis(50),
                |_, happened| match happened {
                    Happened::Incoming(Incoming::Response {
                        handle: h,
                        message,
                        block,
                    }) if h == handle => match block {
                        Some(b) => {
                            println!(
                                "  client got  block at {:>4}{}: {} bytes",
                                b.offset,
                                b.total.map_or(String::new(), |t| format!(" of {t}")),
                                message.payload().len()
                            );
                            done = b.last;
                            received += message.payload().len();
                        }
                        None => {
                            print_response(&message);
                            done = true;
                        }
                    },
                    Happened::Event(e) => {
                        println!("  client: {e}");
                        failures += 1;
                        done = true;
                    }
                    _ => {}
                },
            )?;
        }
        if !done {
            println!("  no answer within 10 s");
            failures += 1;
        } else if received > 0 {
            println!("  whole body: {received} bytes");
        }
    }

    let ping = client.ping(now(start), server_addr)?;
    let mut ponged = false;
    let give_up = StdInstant::now() + Duration::from_secs(10);
    while !ponged && StdInstant::now() < give_up {
        turn(
            &mut client,
            &client_socket,
            start,
            Duration::from_millis(50),
            |_, happened| {
                if let Happened::Event(e) = happened {
                    ponged = e == Event::Pong(ping);
                    println!("ping: {e}");
                }
            },
        )?;
    }

    stop.store(true, Ordering::Relaxed);
    server_thread.join().expect("server thread")?;
    if failures > 0 || !ponged {
        return Err("some exchanges failed".into());
    }
    Ok(())
}

fn print_response(message: &Message<'_>) {
    println!("  client got  {message}");
    if let Ok(text) = std::str::from_utf8(message.payload()) {
        if !text.is_empty() {
            println!("  payload     {text:?}");
        }
    }
}
