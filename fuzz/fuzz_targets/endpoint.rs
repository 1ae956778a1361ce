//! Two small endpoints driven by arbitrary sequences of datagrams (raw and well-formed),
//! deliveries, drops and duplicates of their own traffic, time steps and commands.
//! Nothing may panic; every output must parse; no deadline may lie in the past; the
//! tables never exceed their capacity.
#![no_main]

use arbitrary::Arbitrary;
use coap_proto::wire::{Code, Message, MessageBuilder, OptionNumber, Type};
use coap_proto::{
    Config, Endpoint, Event, Incoming, IncomingHandle, Instant, Output, RequestHandle,
    RequestOptions, ResponseMode,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

type Ep = Endpoint<u8, 4, 6, 128, 8, 256>;

#[derive(Arbitrary, Debug)]
enum Op {
    Raw { to: bool, from: u8, bytes: Vec<u8> },
    Message { to: bool, from: u8, ty: u8, code: u8, mid: u16, token: Vec<u8>, options: Vec<(u16, Vec<u8>)>, payload: Vec<u8> },
    Deliver(u8),
    Duplicate(u8),
    Drop(u8),
    Advance(u32),
    Request { on: bool, method: u8, non: bool, token: Option<Vec<u8>>, path: String, timeout_ms: Option<u16> },
    Ping(bool),
    Cancel(u8),
    Respond { which: u8, code: u8, mode: u8, payload: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    seeds: (u64, u64),
    ack_delay_ms: u16,
    ops: Vec<Op>,
}

struct World {
    eps: [Ep; 2],
    now: Instant,
    wire: Vec<(usize, u8, Vec<u8>)>, // (to endpoint, from peer id, bytes)
    requests: Vec<(usize, RequestHandle)>,
    incoming: Vec<(usize, IncomingHandle)>,
}

impl World {
    fn drain(&mut self, i: usize) {
        for _ in 0..256 {
            match self.eps[i].poll_output(self.now) {
                Output::Transmit(t) => {
                    Message::parse(t.data).expect("output parses");
                    assert!(t.data.len() <= 128 || t.data.len() <= 256);
                    if (t.to as usize) < 2 && self.wire.len() < 64 {
                        self.wire.push((t.to as usize, i as u8, t.data.to_vec()));
                    }
                }
                Output::Event(e) => {
                    let _ = e.to_string();
                    if let Event::TimedOut(h) | Event::Reset(h) | Event::Pong(h) = e {
                        self.requests.retain(|&(n, r)| !(n == i && r == h));
                    }
                }
                Output::Timeout(t) => {
                    if let Some(t) = t {
                        assert!(t > self.now, "deadline in the past");
                    }
                    return;
                }
            }
        }
        panic!("poll_output never settles");
    }

    fn deliver(&mut self, to: usize, from: u8, bytes: &[u8]) {
        let now = self.now;
        match self.eps[to].handle_datagram(now, from, bytes) {
            Some(Incoming::Request { handle, message }) => {
                let _ = message.to_string();
                if self.incoming.len() < 16 {
                    self.incoming.push((to, handle));
                }
            }
            Some(Incoming::Response { handle, message, .. }) => {
                let _ = message.to_string();
                self.requests.retain(|&(n, r)| !(n == to && r == handle));
            }
            None => {}
        }
        assert!(self.eps[to].exchanges_in_flight() <= 4);
    }
}

fn build(ty: u8, code: u8, mid: u16, token: &[u8], options: &[(u16, Vec<u8>)], payload: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 512];
    let code = Code::from_u8(code)?;
    let mut b = MessageBuilder::new(&mut buf, Type::from_bits(ty), code, mid).ok()?;
    b.token(token.get(..token.len().min(16))?).ok()?;
    for (n, v) in options.iter().take(8) {
        b.option(OptionNumber(*n), v.get(..v.len().min(64))?).ok()?;
    }
    b.payload(payload.get(..payload.len().min(128))?).ok()?;
    Some(b.finish().to_vec())
}

fuzz_target!(|input: Input| {
    let config = |seed| Config {
        seed,
        empty_ack_delay: Duration::from_millis(input.ack_delay_ms as u64 % 5000),
        ..Config::default()
    };
    let mut w = World {
        eps: [Ep::new(config(input.seeds.0)).unwrap(), Ep::new(config(input.seeds.1)).unwrap()],
        now: Instant::ZERO,
        wire: Vec::new(),
        requests: Vec::new(),
        incoming: Vec::new(),
    };
    for op in input.ops.iter().take(128) {
        match op {
            Op::Raw { to, from, bytes } => w.deliver(*to as usize, *from, bytes),
            Op::Message { to, from, ty, code, mid, token, options, payload } => {
                if let Some(bytes) = build(*ty, *code, *mid, token, options, payload) {
                    w.deliver(*to as usize, *from, &bytes);
                }
            }
            Op::Deliver(i) | Op::Duplicate(i) | Op::Drop(i) => {
                if w.wire.is_empty() {
                    continue;
                }
                let at = *i as usize % w.wire.len();
                let (to, from, bytes) = if matches!(op, Op::Duplicate(_)) {
                    w.wire[at].clone()
                } else {
                    w.wire.remove(at)
                };
                if !matches!(op, Op::Drop(_)) {
                    w.deliver(to, from, &bytes);
                }
            }
            Op::Advance(ms) => w.now = w.now + Duration::from_millis(*ms as u64 % 400_000),
            Op::Request { on, method, non, token, path, timeout_ms } => {
                let i = *on as usize;
                let opts = RequestOptions {
                    non_confirmable: *non,
                    token: token.as_deref(),
                    timeout: timeout_ms.map(|t| Duration::from_millis(t as u64)),
                    ..Default::default()
                };
                let code = Code::from_u8(*method).unwrap_or(Code::GET);
                let now = w.now;
                if let Ok(h) = w.eps[i].request(now, 1 - i as u8, code, &opts, |b| {
                    b.uri_path(path)?;
                    Ok(())
                }) {
                    w.requests.push((i, h));
                }
            }
            Op::Ping(on) => {
                let i = *on as usize;
                let now = w.now;
                if let Ok(h) = w.eps[i].ping(now, 1 - i as u8) {
                    w.requests.push((i, h));
                }
            }
            Op::Cancel(k) => {
                if !w.requests.is_empty() {
                    let (i, h) = w.requests.remove(*k as usize % w.requests.len());
                    let now = w.now;
                    let _ = w.eps[i].cancel(now, h);
                }
            }
            Op::Respond { which, code, mode, payload } => {
                if !w.incoming.is_empty() {
                    let (i, h) = w.incoming.remove(*which as usize % w.incoming.len());
                    let code = Code::from_u8(*code).unwrap_or(Code::CONTENT);
                    let mode = match mode % 3 {
                        0 => ResponseMode::Auto,
                        1 => ResponseMode::Confirmable,
                        _ => ResponseMode::NonConfirmable,
                    };
                    let now = w.now;
                    let _ = w.eps[i].respond_with(now, h, mode, code, |b| {
                        b.payload(payload)?;
                        Ok(())
                    });
                }
            }
        }
        w.drain(0);
        w.drain(1);
    }
});
