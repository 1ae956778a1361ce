//! Notifications per second: one observable resource, 1,000 observers in memory.
//!
//! ```text
//! cargo bench --bench observe                  # notifications/s, median of 11 rounds
//! cargo bench --bench observe -- count ROUNDS  # ROUNDS rounds (for callgrind)
//! ```
//!
//! A round is one change of the resource: `notify` (NON), then `poll_output` drained,
//! answering `Event::NotificationsDue` with `notify_due` as an application does, until
//! every observer has its notification. The endpoint has 64 exchange records and 64
//! buffers: a NON notification holds one of each until the poll that sends it.

use std::hint::black_box;
use std::time::{Duration, Instant as Clock};

use coap_proto::wire::{Code, MessageBuilder, Type};
use coap_proto::{Config, Endpoint, Event, Incoming, Instant, Output};

const OBSERVERS: usize = 1000;
type Ep = Endpoint<u16, 66, 66, 256, 1024, 65536, OBSERVERS>;

fn setup() -> Box<Ep> {
    let mut ep = Box::new(
        Ep::new(Config {
            seed: 1,
            peer_share_percent: 100,
            ..Config::default()
        })
        .unwrap(),
    );
    let now = Instant::ZERO;
    let mut buf = [0u8; 64];
    for peer in 0..OBSERVERS as u16 {
        let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, peer).unwrap();
        b.token(&peer.to_be_bytes()).unwrap();
        b.observe(0).unwrap();
        b.uri_path("/temp").unwrap();
        let req = b.finish().to_vec();
        let Some(Incoming::Request { handle, .. }) = ep.handle_datagram(now, peer, &req) else {
            panic!("registration {peer}");
        };
        assert!(
            ep.respond_observe(now, handle, 0, Code::CONTENT, |b| b
                .payload(b"20.0")
                .map(drop))
                .unwrap()
        );
        while let Output::Transmit(_) | Output::Event(_) = ep.poll_output(now) {}
    }
    assert_eq!(ep.observers(0), OBSERVERS);
    ep
}

/// One change, notified to every observer; returns the notifications sent.
fn round(ep: &mut Ep, now: Instant, value: u32) -> usize {
    let body = value.to_be_bytes();
    let build = |b: &mut MessageBuilder<'_>| b.payload(&body).map(drop);
    ep.notify(now, 0, false, Code::CONTENT, build).unwrap();
    let mut sent = 0;
    loop {
        match ep.poll_output(now) {
            Output::Transmit(t) => {
                black_box(t.data);
                sent += 1;
            }
            Output::Event(Event::NotificationsDue(r)) => {
                ep.notify_due(now, r, false, Code::CONTENT, build).unwrap();
            }
            Output::Event(e) => panic!("{e}"),
            Output::Timeout(_) => return sent,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut ep = setup();
    let mut now = Instant::ZERO;
    if args.first().map(String::as_str) == Some("count") {
        let rounds: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
        for r in 0..rounds {
            now = now + Duration::from_millis(1);
            assert_eq!(round(&mut ep, now, r), OBSERVERS);
        }
        return;
    }
    let mut rates = Vec::new();
    for sample in 0..11u32 {
        let start = Clock::now();
        let mut sent = 0;
        for r in 0..20 {
            now = now + Duration::from_millis(1);
            sent += round(&mut ep, now, sample * 100 + r);
        }
        assert_eq!(sent, 20 * OBSERVERS);
        rates.push(sent as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{OBSERVERS} observers: {:.0} notifications/s (median of 11 rounds of 20 changes; min {:.0}, max {:.0})",
        rates[5], rates[0], rates[10]
    );
    println!(
        "endpoint: {} bytes with {OBSERVERS} observation records",
        std::mem::size_of::<Ep>()
    );
}
