//! Request/response exchanges under loss, duplication and reordering, over many seeds
//! (RFC 7252 §4, §5).
//!
//! Invariants checked for every run:
//! - every request ends with exactly one outcome: response, timeout or reset;
//! - the server's handler runs at most once per request, and exactly once for every
//!   request whose response arrived;
//! - every response the client accepts is the one the server sent for that request;
//! - no endpoint ever asks to be woken in the past, every output parses, the run goes
//!   quiet within a bounded number of steps, and all slots are free at the end.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use coap_proto::wire::Code;
use coap_proto::{
    Config, Endpoint, Event, Incoming, IncomingHandle, Instant, RequestHandle, RequestOptions,
    ResponseMode,
};
use common::sim::{App, Link, Sim};
use proptest::prelude::*;

const E: usize = 16;
const B: usize = E + 2;
const D: usize = 128;
const M: usize = 256;
const R: usize = 8192;
type SimEp = Endpoint<u8, E, B, M, D, R>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Response,
    TimedOut,
    Reset,
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Piggyback,
    Separate(ResponseMode, Duration),
}

#[derive(Clone, Debug)]
struct Planned {
    at: Instant,
    client: usize,
    id: u32,
    con: bool,
}

struct Exchanges {
    plan: Vec<Planned>,
    answers: Vec<Answer>,
    issued: HashMap<(usize, RequestHandle), u32>,
    outcomes: HashMap<u32, Vec<Outcome>>,
    handler_runs: HashMap<u32, u32>,
    deferred: Vec<(Instant, IncomingHandle, u32, ResponseMode)>,
    server_events: Vec<Event>,
}

const SERVER: usize = 0;

fn payload(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

impl App<E, B, M, D, R> for Exchanges {
    fn incoming(
        &mut self,
        node: usize,
        now: Instant,
        _from: u8,
        incoming: Incoming<'_>,
        ep: &mut SimEp,
    ) {
        match incoming {
            Incoming::Request { handle, message } => {
                assert_eq!(node, SERVER);
                let id = u32::from_be_bytes(message.payload().try_into().expect("4-byte id"));
                *self.handler_runs.entry(id).or_default() += 1;
                // A request over the server's (or its peer's) quota of late answers
                // is answered at once, as `may_defer` asks.
                let answer = match self.answers[id as usize] {
                    Answer::Separate(..) if !ep.may_defer(handle) => Answer::Piggyback,
                    answer => answer,
                };
                match answer {
                    Answer::Piggyback => ep
                        .respond(now, handle, Code::CONTENT, |b| {
                            b.payload(&payload(id))?;
                            Ok(())
                        })
                        .unwrap(),
                    Answer::Separate(mode, delay) => {
                        self.deferred.push((now + delay, handle, id, mode))
                    }
                }
            }
            Incoming::Response {
                handle, message, ..
            } => {
                let id = self.issued[&(node, handle)];
                assert_eq!(
                    message.payload(),
                    payload(id),
                    "response to {id} carries another id"
                );
                assert_eq!(message.code(), Code::CONTENT);
                self.outcomes.entry(id).or_default().push(Outcome::Response);
            }
        }
    }

    fn event(&mut self, node: usize, _now: Instant, event: Event, _ep: &mut SimEp) {
        let client_outcome = |h: &RequestHandle, o| (node, *h, o);
        let (key, outcome) = match event {
            Event::TimedOut(h) => {
                let (n, h, o) = client_outcome(&h, Outcome::TimedOut);
                ((n, h), o)
            }
            Event::Reset(h) => {
                let (n, h, o) = client_outcome(&h, Outcome::Reset);
                ((n, h), o)
            }
            other => {
                assert_eq!(node, SERVER, "unexpected client event {other:?}");
                self.server_events.push(other);
                return;
            }
        };
        let id = self.issued[&key];
        self.outcomes.entry(id).or_default().push(outcome);
    }

    fn tick(&mut self, node: usize, now: Instant, ep: &mut SimEp) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut wake = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if node == SERVER {
            let mut keep = Vec::new();
            for (due, handle, id, mode) in self.deferred.drain(..) {
                if due <= now {
                    ep.respond_with(now, handle, mode, Code::CONTENT, |b| {
                        b.payload(&payload(id))?;
                        Ok(())
                    })
                    .expect("deferred request still known");
                } else {
                    wake(due);
                    keep.push((due, handle, id, mode));
                }
            }
            self.deferred = keep;
        } else {
            let mut keep = Vec::new();
            for p in self.plan.drain(..) {
                if p.client != node || p.at > now {
                    if p.client == node {
                        wake(p.at);
                    }
                    keep.push(p);
                    continue;
                }
                let opts = RequestOptions {
                    non_confirmable: !p.con,
                    ..Default::default()
                };
                match ep.request(now, SERVER as u8, Code::POST, &opts, |b| {
                    b.uri_path("/echo")?.payload(&payload(p.id))?;
                    Ok(())
                }) {
                    Ok(h) => {
                        self.issued.insert((node, h), p.id);
                    }
                    Err(coap_proto::Error::TableFull) => {
                        // Try again a little later: the table frees up as requests end.
                        wake(now + Duration::from_millis(100));
                        keep.push(Planned {
                            at: now + Duration::from_millis(100),
                            ..p
                        });
                    }
                    Err(e) => panic!("request refused: {e}"),
                }
            }
            self.plan = keep;
        }
        next
    }
}

#[derive(Debug)]
struct Scenario {
    seed: u64,
    link: Link,
    clients: usize,
    requests: Vec<(u64, bool, u8, u16)>, // (start ms, con, answer kind, delay ms)
}

fn run(s: &Scenario) -> (Exchanges, Sim<E, B, M, D, R>) {
    let nodes: Vec<SimEp> = (0..=s.clients)
        .map(|i| {
            SimEp::new(Config {
                seed: s.seed.wrapping_mul(31).wrapping_add(i as u64),
                ..Config::default()
            })
            .unwrap()
        })
        .collect();
    let mut app = Exchanges {
        plan: Vec::new(),
        answers: Vec::new(),
        issued: HashMap::new(),
        outcomes: HashMap::new(),
        handler_runs: HashMap::new(),
        deferred: Vec::new(),
        server_events: Vec::new(),
    };
    for (id, &(start, con, kind, delay)) in s.requests.iter().enumerate() {
        app.plan.push(Planned {
            at: Instant::from_millis(start),
            client: 1 + id % s.clients,
            id: id as u32,
            con,
        });
        let delay = Duration::from_millis(delay as u64);
        app.answers.push(match kind % 3 {
            0 => Answer::Piggyback,
            1 => Answer::Separate(ResponseMode::Auto, delay),
            _ => Answer::Separate(ResponseMode::NonConfirmable, delay),
        });
    }
    let mut sim = Sim::new(nodes, s.link, s.seed);
    let quiet = sim.run(&mut app, Instant::from_secs(24 * 3600), 200_000);
    assert!(quiet, "the network must go quiet");
    (app, sim)
}

fn check(s: &Scenario, app: &Exchanges, sim: &Sim<E, B, M, D, R>) {
    assert!(app.plan.is_empty(), "every planned request was issued");
    for id in 0..s.requests.len() as u32 {
        let outcomes = app.outcomes.get(&id).cloned().unwrap_or_default();
        assert_eq!(
            outcomes.len(),
            1,
            "request {id} must end exactly once: {outcomes:?}"
        );
        let runs = app.handler_runs.get(&id).copied().unwrap_or(0);
        assert!(runs <= 1, "handler ran {runs} times for request {id}");
        if outcomes[0] == Outcome::Response {
            assert_eq!(runs, 1, "a response without the handler running for {id}");
        }
        assert_ne!(
            outcomes[0],
            Outcome::Reset,
            "nobody resets a live request here"
        );
    }
    for (i, node) in sim.nodes.iter().enumerate() {
        assert_eq!(node.exchanges_in_flight(), 0, "node {i} left slots in use");
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        0u32..=300,
        0u32..=300,
        1u64..=2000,
        1usize..=3,
        prop::collection::vec((0u64..60_000, any::<bool>(), 0u8..3, 0u16..8000), 1..25),
    )
        .prop_map(
            |(seed, loss, duplicate, max_delay, clients, requests)| Scenario {
                seed,
                link: Link {
                    loss,
                    duplicate,
                    min_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(max_delay),
                },
                clients,
                requests,
            },
        )
}

/// Cases per run: 3,000 by default; `SIM_CASES=200000 cargo test --release --test
/// sim_exchange` for a longer search.
fn cases() -> u32 {
    std::env::var("SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_request_ends_once_and_handlers_run_once(s in scenario()) {
        let (app, sim) = run(&s);
        check(&s, &app, &sim);
    }
}

/// A fixed matrix for the record: seeds × loss rates, with duplication and reordering.
#[test]
fn seed_matrix_under_loss_duplication_and_reordering() {
    let mut total = (0usize, 0usize, 0usize);
    for loss in [0u32, 100, 200, 300] {
        for seed in 0..50u64 {
            let requests = (0..20u64)
                .map(|i| {
                    (
                        i * 1500 + seed % 7 * 100,
                        (i + seed) % 3 != 0,
                        ((i * 7 + seed) % 3) as u8,
                        ((i * 13 + seed) % 5000) as u16,
                    )
                })
                .collect();
            let s = Scenario {
                seed,
                link: Link {
                    loss,
                    duplicate: 200,
                    min_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(800),
                },
                clients: 1 + (seed % 3) as usize,
                requests,
            };
            let (app, sim) = run(&s);
            check(&s, &app, &sim);
            total.0 += 1;
            total.1 += sim.sent;
            let responses = app
                .outcomes
                .values()
                .filter(|o| o[0] == Outcome::Response)
                .count();
            total.2 += responses;
        }
    }
    println!(
        "{} runs, {} datagrams, {} responses",
        total.0, total.1, total.2
    );
}

/// With a perfect link every request gets its response.
#[test]
fn perfect_link_answers_every_request() {
    let requests = (0..20u64)
        .map(|i| (i * 100, i % 2 == 0, (i % 3) as u8, 50))
        .collect();
    let s = Scenario {
        seed: 1,
        link: Link::PERFECT,
        clients: 2,
        requests,
    };
    let (app, sim) = run(&s);
    check(&s, &app, &sim);
    assert!(app.outcomes.values().all(|o| o == &[Outcome::Response]));
}

/// Found by the property test in CI: one client with seven requests answered late at
/// once holds more than its share of the server's late places.
#[test]
fn one_client_with_many_late_answers_regression() {
    let requests = vec![
        (0, false, 0, 0),
        (0, false, 0, 0),
        (11123, false, 0, 0),
        (17240, true, 1, 13),
        (17240, true, 1, 11),
        (17240, true, 1, 9),
        (0, false, 0, 0),
        (17240, true, 1, 7),
        (17240, true, 1, 5),
        (17240, true, 1, 3),
        (17240, true, 1, 1),
        (0, false, 0, 0),
        (17240, false, 1, 1),
        (0, false, 0, 0),
    ];
    let s = Scenario {
        seed: 7439355692029491428,
        link: Link {
            loss: 12,
            duplicate: 0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        },
        clients: 1,
        requests,
    };
    let (app, sim) = run(&s);
    check(&s, &app, &sim);
}
