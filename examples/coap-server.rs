//! A CoAP server with the resources of libcoap's example server, so the two can stand
//! in for each other in tests and demos.
//!
//! ```text
//! cargo run --features std --example coap-server -- [-A ADDRESS] [-p PORT] [-d MAX] [-v]
//! ```
//!
//! Defaults: `-A 127.0.0.1 -p 5683 -d 64`. `-d MAX` caps the resources created by PUT
//! or POST (each at most 64 KiB): past it, creating one more gets 4.06 Not Acceptable
//! until one is deleted, as libcoap's example server answers. Resources:
//!
//! | path | methods | behaviour |
//! |---|---|---|
//! | `/` | GET | a line of text about this server |
//! | `/time` | GET | the current UTC time |
//! | `/async?N` | GET | "Async Complete!" as a separate response after N seconds (default 2, at most 60); one timer thread answers them all |
//! | `/example_data` | GET, PUT, POST, DELETE | 1500 bytes; PUT replaces them |
//! | any other | PUT, POST | creates the resource (2.01; POST adds Location-Path) |
//! | created ones | GET, PUT, POST, DELETE | 2.05 / 2.04 / 2.04 / 2.02, then 4.04 |
//!
//! Bodies over 1024 bytes go block-wise both ways (Block1 and Block2);
//! `/.well-known/core` lists the resources.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coap_proto::net::blocking::{Reply, Responder, Server};
use coap_proto::net::{Request, Response};
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::{Code, ContentFormat};

type Store = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Resources that are there from the start and do not count toward `-d`.
const BUILT_IN: usize = 1;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut address = String::from("127.0.0.1");
    let mut port = 5683u16;
    let mut verbose = false;
    let mut max_dynamic = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-A" => address = args.next().ok_or("-A needs an address")?,
            "-p" => port = args.next().ok_or("-p needs a port")?.parse()?,
            "-d" => max_dynamic = args.next().ok_or("-d needs a number")?.parse()?,
            "-v" => verbose = true,
            _ => {
                return Err(format!(
                    "usage: coap-server [-A ADDRESS] [-p PORT] [-d MAX] [-v] (unknown {arg})"
                )
                .into());
            }
        }
    }
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address
    };
    let mut server = Server::bind(format!("{host}:{port}"))?;
    eprintln!("coap-server listening on {}", server.local_addr());

    let store: Store = Arc::default();
    let example: Vec<u8> = (0..1500u32).map(|i| b'a' + (i % 26) as u8).collect();
    store
        .lock()
        .unwrap()
        .insert("/example_data".into(), example);

    server.resource(
        Resource::new("/", Methods::GET).ct(0).title("General Info"),
        |_| {
            Response::content(
                "This is a test server made with coap-proto, a sans-IO CoAP library in Rust.\n",
            )
            .content_format(ContentFormat::TEXT_PLAIN)
            .into()
        },
    );
    server.resource(
        Resource::new("/time", Methods::GET)
            .rt("ticks")
            .ct(0)
            .title("Internal Clock"),
        |_| {
            Response::content(utc_now())
                .content_format(ContentFormat::TEXT_PLAIN)
                .max_age(1)
                .into()
        },
    );
    let timer = timer_thread();
    server.resource(
        Resource::new("/async", Methods::GET).title("Separate response"),
        move |req| {
            let delay = req
                .query
                .first()
                .and_then(|q| q.parse().ok())
                .unwrap_or(2u64)
                .min(60);
            let due = Instant::now() + Duration::from_secs(delay);
            let timer = timer.clone();
            Reply::later(move |responder| {
                let _ = timer.send((due, responder));
            })
        },
    );
    let s = store.clone();
    let all = Methods::GET
        .and(Methods::PUT)
        .and(Methods::POST)
        .and(Methods::DELETE);
    server.resource(
        Resource::new("/example_data", all).title("Example Data"),
        move |req| dynamic(&s, req, max_dynamic, verbose),
    );
    let s = store.clone();
    server.fallback(move |req| dynamic(&s, req, max_dynamic, verbose));
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
                responder.respond(Response::content("Async Complete!"));
            }
        }
    });
    tx
}

/// Resources created by PUT or POST (at most `max_dynamic`), and `/example_data`.
fn dynamic(store: &Store, req: &Request, max_dynamic: usize, verbose: bool) -> Reply {
    let mut map = store.lock().unwrap();
    let exists = map.contains_key(&req.path);
    let creating = !exists && matches!(req.method, Code::PUT | Code::POST);
    let response = match (req.method, exists) {
        _ if creating && map.len() >= BUILT_IN + max_dynamic => {
            Response::new(Code::NOT_ACCEPTABLE).payload("too many dynamic resources")
        }
        (Code::GET, true) => Response::content(map[&req.path].clone()),
        (Code::PUT, _) | (Code::POST, _) => {
            map.insert(req.path.clone(), req.payload.clone());
            match (exists, req.method) {
                (true, _) => Response::new(Code::CHANGED),
                (false, Code::POST) => Response::new(Code::CREATED).location_path(&req.path),
                (false, _) => Response::new(Code::CREATED),
            }
        }
        (Code::DELETE, true) => {
            map.remove(&req.path);
            Response::new(Code::DELETED)
        }
        (Code::GET | Code::DELETE, false) => Response::new(Code::NOT_FOUND),
        _ => Response::new(Code::METHOD_NOT_ALLOWED),
    };
    if verbose {
        eprintln!("{req} -> {response}");
    }
    response.into()
}

/// "YYYY-MM-DD hh:mm:ss UTC" without a date library (civil-from-days).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
