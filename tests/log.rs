//! The `log` feature: messages sent and received at debug level, in their `Display`
//! form; retransmissions, give-ups, duplicates and refusals at info level.
//!
//! One test in this binary: the logger is process-wide.
#![cfg(all(feature = "log", feature = "std"))]

use std::net::UdpSocket;
use std::sync::Mutex;
use std::time::Duration;

use coap_proto::net::blocking::{Client, Server};
use coap_proto::net::{Error, Response};
use coap_proto::resource::{Methods, Resource};
use coap_proto::{Config, TransmissionParams};

struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target() == "coap_proto" {
            let line = record.args().to_string();
            self.0.lock().unwrap().push((record.level(), line));
        }
    }
    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));

fn lines(level: log::Level, containing: &str) -> usize {
    let log = LOG.0.lock().unwrap();
    log.iter()
        .filter(|(l, s)| *l == level && s.contains(containing))
        .count()
}

#[test]
fn messages_retransmissions_give_ups_and_duplicates_are_logged() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Debug);

    // A client whose server never answers: 2 retransmissions, then it gives up.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let fast = Config {
        params: TransmissionParams {
            ack_timeout: Duration::from_millis(20),
            max_retransmit: 2,
            ..TransmissionParams::RFC7252
        },
        ..Config::default()
    };
    let mut c = Client::with_config(silent.local_addr().unwrap(), fast).unwrap();
    assert_eq!(c.get("/nobody"), Err(Error::TimedOut));
    assert_eq!(lines(log::Level::Info, "retransmitting CON MID"), 2);
    assert_eq!(lines(log::Level::Info, "giving up on CON MID"), 1);
    assert_eq!(lines(log::Level::Info, "timed out"), 1);
    // Each of the 3 transmissions, in the message's Display form.
    assert_eq!(lines(log::Level::Debug, "Uri-Path: \"nobody\""), 3);

    // A server that gets the same CON twice answers both, processes it once.
    let mut server = Server::bind("127.0.0.1:0").unwrap();
    server.resource(Resource::new("/x", Methods::GET), |_| {
        Response::content("x").into()
    });
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..2 {
        raw.send_to(&[0x40, 0x01, 0xbe, 0xef, 0xb1, b'x'], addr)
            .unwrap();
        raw.recv_from(&mut buf).unwrap();
    }
    assert_eq!(lines(log::Level::Info, "duplicate request MID 0xbeef"), 1);
    assert_eq!(lines(log::Level::Debug, "received from"), 2);
    assert!(lines(log::Level::Debug, "ACK 2.05 Content MID 0xbeef") >= 2);
}
