//! Overload over a lossy, duplicating, reordering link, at the adapters' default
//! capacities: one client retransmits CON POSTs while other clients fetch large replies
//! and a crowd of peers sends requests the server answers late (or never), and one more
//! client sends GETs the server answers at once.
//!
//! Invariants: a POST handler runs at most once per request; every ACK the server sends
//! for a live POST is byte-identical to the first; the GETs answered at once are never
//! refused (no 5.03, no 4.29); every client request ends exactly once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use coap_proto::wire::{Code, Message, Type};
use coap_proto::{Config, Endpoint, Event, Incoming, Instant, RequestHandle, RequestOptions};
use common::sim::{App, Link, Sim};
use proptest::prelude::*;

type Ep = Endpoint<u8>;
const SERVER: usize = 0;
/// Node 1 sends POSTs, 2..=4 fetch large replies, 5 sends GETs answered at once, the
/// rest (6..) flood the server with requests it answers late or never.
const POSTER: usize = 1;
const FETCHERS: std::ops::RangeInclusive<usize> = 2..=4;
const QUICK: usize = 5;
const CROWD_FROM: usize = 6;

#[derive(Default)]
struct Load {
    /// Requests each client still has to send: (when, path).
    plan: Vec<(Instant, usize, &'static str)>,
    issued: HashMap<(usize, RequestHandle), u32>,
    ends: HashMap<u32, u32>,
    next_id: u32,
    post_runs: HashMap<u32, u32>,
    quick_codes: Vec<Code>,
    late: Vec<(Instant, coap_proto::IncomingHandle)>,
}

impl App<64, 16, 1152, 512, 32768> for Load {
    fn incoming(
        &mut self,
        node: usize,
        now: Instant,
        _from: u8,
        incoming: Incoming<'_>,
        ep: &mut Ep,
    ) {
        match incoming {
            Incoming::Request { handle, message } => {
                assert_eq!(node, SERVER);
                let path: Vec<&[u8]> = message.uri_path().collect();
                match path.first().copied() {
                    Some(b"post") => {
                        let id = u32::from_be_bytes(message.payload().try_into().unwrap());
                        *self.post_runs.entry(id).or_default() += 1;
                        ep.respond(now, handle, Code::CREATED, |b| {
                            b.payload(&[1; 64]).map(drop)
                        })
                        .unwrap();
                    }
                    Some(b"big") => ep
                        .respond(now, handle, Code::CONTENT, |b| {
                            b.payload(&[2; 1000]).map(drop)
                        })
                        .unwrap(),
                    Some(b"slow") => {
                        // Answered after 20 s, if at all (every third never).
                        if message.message_id() % 3 != 0 {
                            self.late.push((now + Duration::from_secs(20), handle));
                        }
                    }
                    _ => ep
                        .respond(now, handle, Code::CONTENT, |b| {
                            b.payload(b"hello").map(drop)
                        })
                        .unwrap(),
                }
            }
            Incoming::Response {
                handle, message, ..
            } => {
                let id = self.issued[&(node, handle)];
                *self.ends.entry(id).or_default() += 1;
                if node == QUICK {
                    self.quick_codes.push(message.code());
                }
            }
        }
    }

    fn event(&mut self, node: usize, _now: Instant, event: Event, _ep: &mut Ep) {
        if let Event::TimedOut(h) | Event::Reset(h) = event {
            let id = self.issued[&(node, h)];
            *self.ends.entry(id).or_default() += 1;
        }
    }

    fn tick(&mut self, node: usize, now: Instant, ep: &mut Ep) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        if node == SERVER {
            let mut keep = vec![];
            for (due, h) in self.late.drain(..) {
                if due <= now {
                    let _ = ep.respond(now, h, Code::CONTENT, |b| b.payload(b"late").map(drop));
                } else {
                    next = Some(next.map_or(due, |n: Instant| n.min(due)));
                    keep.push((due, h));
                }
            }
            self.late = keep;
            return next;
        }
        let mut keep = vec![];
        for (at, client, path) in std::mem::take(&mut self.plan) {
            if client != node || at > now {
                if client == node {
                    next = Some(next.map_or(at, |n: Instant| n.min(at)));
                }
                keep.push((at, client, path));
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let method = if path == "post" {
                Code::POST
            } else {
                Code::GET
            };
            let r = ep.request(now, SERVER as u8, method, &RequestOptions::default(), |b| {
                b.uri_path(path)?;
                if method == Code::POST {
                    b.payload(&id.to_be_bytes())?;
                }
                Ok(())
            });
            if let Ok(h) = r {
                self.issued.insert((node, h), id);
            }
        }
        self.plan = keep;
        next
    }
}

fn scenario(seed: u64, loss: u32, crowd: usize) -> (Load, Sim<64, 16, 1152, 512, 32768>) {
    let nodes: Vec<Ep> = (0..CROWD_FROM + crowd)
        .map(|i| {
            Ep::new(Config {
                seed: seed.wrapping_mul(31).wrapping_add(i as u64),
                ..Config::default()
            })
            .unwrap()
        })
        .collect();
    let link = Link {
        loss,
        duplicate: 200,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(300),
    };
    let mut sim = Sim::new(nodes, link, seed);
    sim.trace = Some(vec![]);
    let mut load = Load::default();
    let ms = Instant::from_millis;
    for k in 0..20u64 {
        load.plan.push((ms(k * 2000), POSTER, "post"));
        for f in FETCHERS {
            load.plan.push((ms(k * 2000 + f as u64 * 97), f, "big"));
        }
        load.plan.push((ms(k * 2000 + 500), QUICK, ""));
    }
    for c in 0..crowd {
        for k in 0..3u64 {
            load.plan
                .push((ms(c as u64 * 7 + k * 3000), CROWD_FROM + c, "slow"));
        }
    }
    let quiet = sim.run(&mut load, Instant::from_secs(600), 2_000_000);
    assert!(quiet, "everything settles");
    (load, sim)
}

fn check(load: &Load, sim: &Sim<64, 16, 1152, 512, 32768>) -> Result<(), TestCaseError> {
    for (id, runs) in &load.post_runs {
        prop_assert!(*runs <= 1, "POST {} ran {} times", id, runs);
    }
    for (key, id) in &load.issued {
        prop_assert_eq!(
            load.ends.get(id).copied().unwrap_or(0),
            1,
            "request {:?} ended once",
            key
        );
    }
    for code in &load.quick_codes {
        prop_assert!(
            *code != Code::SERVICE_UNAVAILABLE && *code != Code::TOO_MANY_REQUESTS,
            "an answer-at-once GET was refused: {}",
            code
        );
    }
    // Every ACK for a POST is byte-identical to the first for that message ID (the
    // simulation lasts less than EXCHANGE_LIFETIME after the last POST).
    let mut first: HashMap<u16, &[u8]> = HashMap::new();
    for (_, from, to, bytes) in sim.trace.as_ref().unwrap() {
        if (*from as usize, *to as usize) != (SERVER, POSTER) {
            continue;
        }
        let m = Message::parse(bytes).unwrap();
        if m.ty() == Type::Ack {
            let f = first.entry(m.message_id()).or_insert(bytes.as_slice());
            prop_assert_eq!(
                *f,
                bytes.as_slice(),
                "a replay differs for MID {}",
                m.message_id()
            );
        }
    }
    Ok(())
}

#[test]
fn posts_retransmitted_among_large_replies_and_a_late_answered_crowd() {
    let (load, sim) = scenario(7, 100, 100);
    check(&load, &sim).unwrap();
    assert_eq!(
        load.post_runs.len(),
        20,
        "every POST got through at 10 % loss"
    );
    assert!(
        load.quick_codes.len() >= 19,
        "answered at once: {}",
        load.quick_codes.len()
    );
    assert!(sim.duplicated > 100 && sim.lost > 100);
    // The crowd went over the deferral quota, and was told so.
    let stats = sim.nodes[SERVER].stats();
    assert!(stats.overloaded > 50, "{stats:?}");
    assert!(stats.duplicates > 50, "{stats:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SIM_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(8)
    ))]

    #[test]
    fn overload_keeps_its_promises_under_loss(seed in any::<u64>(), loss in 0u32..300, crowd in 0usize..150) {
        let (load, sim) = scenario(seed, loss, crowd);
        check(&load, &sim)?;
    }
}
