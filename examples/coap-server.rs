//! A CoAP server with the flags and resources of libcoap's example server, so the two
//! can stand in for each other in scripts and tests; `tokio_server` is the same server
//! on the tokio adapter.
//!
//! ```text
//! cargo run --features std,log --example coap-server -- [-A ADDRESS] [-p PORT] [-d MAX] [-g GROUP]... [-G INTERFACE] [-v N] [-h]
//! cargo run --features std,log,dtls --example coap-server -- -k KEY [-h HINT] …
//! ```
//!
//! With `-k KEY` (feature `dtls`) it also serves `coaps://` on PORT + 1, as libcoap's
//! does: DTLS 1.2 with pre-shared keys, any identity with that key; the resources are
//! the same and shared between both.
//!
//! With `-g GROUP` it joins a multicast group (RFC 7252 §8), as libcoap's does with the
//! same flag, and answers group requests — a discovery GET of `/.well-known/core` to
//! `224.0.1.187` — at a random point within Leisure, never with an error. `-G` names
//! the interface.
//!
//! Defaults: `-A 127.0.0.1 -p 5683 -d 64`. `-d MAX` caps the resources created by PUT
//! or POST (each at most 64 KiB): past it, creating one more gets 4.06 Not Acceptable
//! until one is deleted, as libcoap's example server answers. `-v 5` logs each request
//! and its answer, `-v 6` and more every message too. Resources:
//!
//! | path | methods | behaviour |
//! |---|---|---|
//! | `/` | GET | a line of text about this server |
//! | `/time` | GET, observable | the current UTC time; observers get it every second |
//! | `/async?N` | GET | "done" (libcoap's text) as a separate response after N seconds (default 2, at most 60); one timer thread answers them all |
//! | `/example_data` | GET, PUT, POST, DELETE | 1500 bytes; PUT replaces them |
//! | any other | PUT, POST | creates the resource (2.01; POST adds Location-Path) |
//! | created ones | GET, PUT, POST, DELETE | 2.05 / 2.04 / 2.04 / 2.02, then 4.04 |
//!
//! Bodies over 1024 bytes go block-wise both ways (Block1 and Block2);
//! `/.well-known/core` lists the resources.
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coap_proto::net::Transport;
use coap_proto::net::blocking::{Reply, Responder, Server};

#[path = "common/interface.rs"]
mod interface;
#[path = "common/logger.rs"]
mod logger;
#[path = "common/server.rs"]
mod shared;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = shared::Options::parse()?;
    let mut server = Server::bind(options.listen())?;
    for group in options.groups()? {
        server.join_group(group)?;
        eprintln!("coap-server joined {group}");
    }
    let store = shared::Store::new(&options);
    let timer = timer_thread();
    // One line, which tests wait for.
    match &options.key {
        Some(key) => {
            let coaps = secure(&options, key, &store, &timer)?;
            eprintln!(
                "coap-server listening on {} and on {coaps} (coaps)",
                server.local_addr()
            );
        }
        None => eprintln!("coap-server listening on {}", server.local_addr()),
    }
    serve(&mut server, store, timer)
}

/// With `-k`: coaps on PORT + 1, in a thread of its own, over the same resources.
#[cfg(feature = "dtls")]
fn secure(
    options: &shared::Options,
    key: &str,
    store: &shared::Store,
    timer: &mpsc::Sender<(Instant, Responder)>,
) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    let mut keys = coap_proto::dtls::KeyStore::new().any_identity(key);
    if let Some(hint) = &options.hint {
        keys = keys.hint(hint.as_str());
    }
    let mut server = Server::bind_psk(options.listen_secure(), keys)?;
    let addr = server.local_addr();
    let (store, timer) = (store.clone(), timer.clone());
    std::thread::spawn(move || {
        if let Err(e) = serve(&mut server, store, timer) {
            eprintln!("coap-server (coaps): {e}");
        }
    });
    Ok(addr)
}

#[cfg(not(feature = "dtls"))]
fn secure(
    _: &shared::Options,
    _: &str,
    _: &shared::Store,
    _: &mpsc::Sender<(Instant, Responder)>,
) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    Err("-k (coaps) needs the dtls feature (cargo run --features std,log,dtls …)".into())
}

/// The resources, on `server`, until it stops.
fn serve<T: Transport>(
    server: &mut Server<64, 16, 1152, 512, 32768, T>,
    store: shared::Store,
    timer: mpsc::Sender<(Instant, Responder)>,
) -> Result<(), Box<dyn std::error::Error>> {
    server.resource(shared::root(), |_| shared::about().into());
    // Observable, like libcoap's: every observer gets the time once a second.
    let time = server.observable(shared::time(), |_| shared::now().into());
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(shared::tick());
            time.notify(shared::now());
        }
    });
    server.resource(shared::async_resource(), move |req| {
        let due = Instant::now() + shared::async_delay(req);
        let timer = timer.clone();
        Reply::later(move |responder| {
            let _ = timer.send((due, responder));
        })
    });
    let s = store.clone();
    server.resource(shared::example_data(), move |req| s.handle(req).into());
    server.fallback(move |req| store.handle(req).into());
    server.run()?;
    Ok(())
}

/// One thread that answers every waiting `/async` request when its time comes, rather
/// than a sleeping thread per request.
fn timer_thread() -> mpsc::Sender<(Instant, Responder)> {
    let (tx, rx) = mpsc::channel::<(Instant, Responder)>();
    std::thread::spawn(move || {
        let mut waiting: Vec<(Instant, Responder)> = Vec::new();
        loop {
            let next = waiting.iter().map(|(due, _)| *due).min();
            let wait = next.map_or(Duration::from_secs(3600), |due| {
                due.saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(wait) {
                Ok(job) => waiting.push(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|(at, _)| *at <= now);
            waiting = later;
            for (_, responder) in due {
                responder.respond(shared::async_done());
            }
        }
    });
    tx
}
