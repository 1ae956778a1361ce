//! Helpers shared by the endpoint tests: small endpoints addressed by `u8`, draining
//! their output, and building or reading messages by hand.
#![allow(dead_code)]

use coap_proto::wire::{Code, Message, MessageBuilder, Type};
use coap_proto::{Config, Endpoint, Event, Instant, Output, TransmissionParams};

/// A small endpoint whose peers are numbered.
pub type Ep = Endpoint<u8, 8, 10, 512, 16, 2048>;

pub const CLIENT: u8 = 1;
pub const SERVER: u8 = 2;

pub fn config(seed: u64) -> Config {
    Config {
        seed,
        ..Config::default()
    }
}

pub fn endpoint(seed: u64) -> Ep {
    Ep::new(config(seed)).unwrap()
}

/// Parameters whose first timeout is exactly ACK_TIMEOUT (random factor 1.0), so that
/// schedules can be asserted to the microsecond.
pub fn exact_params() -> TransmissionParams {
    TransmissionParams {
        ack_random_factor_milli: 1000,
        ..TransmissionParams::RFC7252
    }
}

/// Everything one drain of `poll_output` produced.
#[derive(Debug)]
pub struct Drained<P = u8> {
    pub sent: Vec<(P, Vec<u8>)>,
    pub events: Vec<Event>,
    pub timeout: Option<Instant>,
}

/// Drains `poll_output` at `now` until it yields a timeout (bounded), for an endpoint of
/// any capacities.
pub fn drain<
    P: Copy + Eq + std::hash::Hash,
    const E: usize,
    const B: usize,
    const M: usize,
    const D: usize,
    const R: usize,
    const O: usize,
    const V: usize,
>(
    ep: &mut Endpoint<P, E, B, M, D, R, O, V>,
    now: Instant,
) -> Drained<P> {
    let mut out = Drained {
        sent: Vec::new(),
        events: Vec::new(),
        timeout: None,
    };
    for _ in 0..1000 {
        match ep.poll_output(now) {
            Output::Transmit(t) => out.sent.push((t.to, t.data.to_vec())),
            Output::Event(e) => out.events.push(e),
            Output::Timeout(t) => {
                if let Some(t) = t {
                    assert!(t > now, "deadline {t} not after now {now}");
                }
                out.timeout = t;
                return out;
            }
        }
    }
    panic!("poll_output did not settle");
}

/// Builds a message by hand.
pub fn msg(
    ty: Type,
    code: Code,
    mid: u16,
    token: &[u8],
    f: impl FnOnce(&mut MessageBuilder<'_>),
) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(&mut buf, ty, code, mid).unwrap();
    b.token(token).unwrap();
    f(&mut b);
    b.finish().to_vec()
}

pub fn parse(bytes: &[u8]) -> Message<'_> {
    Message::parse(bytes).expect("endpoint output parses")
}

pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

#[cfg(feature = "std")]
pub mod example;
pub mod libcoap;
#[cfg(feature = "std")]
pub mod netns;
pub mod sim;
