//! Group requests (RFC 7252 §8) under loss, duplication and reordering: one client, a
//! group of one to six servers on a simulated multicast link, over many seeds.
//!
//! Invariants checked for every run:
//! - each server runs its handler at most once for the group request, and sends at most
//!   one answer to it, NON, at a point within its Leisure after the request reached it;
//! - no server sends an RST or an error response (a server with nothing to say — a 4.04
//!   here — is silent);
//! - the client delivers each server's answer once, under the request's handle, the
//!   blocks of a block-wise answer in order and never mixed with another server's
//!   (RFC 7959 §2.8); a complete body is exactly the server's;
//! - the request ends exactly once, with `GroupEnded`, after every delivery; a
//!   member's follow-up that fails says so once;
//! - every table is empty at the end.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use coap_proto::wire::{Code, Message, Type};
use coap_proto::{Config, Endpoint, Event, Incoming, Instant, RequestHandle, RequestOptions};
use common::sim::{App, Group, Link, Sim};
use proptest::prelude::*;

const E: usize = 16;
const B: usize = E + 2;
const D: usize = 128;
const M: usize = 512;
const R: usize = 8192;
type SimEp = Endpoint<u8, E, B, M, D, R>;

const CLIENT: usize = 0;
const GROUP: u8 = 200;

/// What a server answers to the group's GET.
#[derive(Clone, Debug)]
enum Role {
    /// The body, block-wise if longer than a block (64 bytes, asked for by the client).
    Body(Vec<u8>),
    /// Nothing useful: the application answers 4.04, which must not be sent.
    NotFound,
}

#[derive(Default)]
struct Server {
    /// When the group request first reached this server.
    arrived: Option<Instant>,
    group_runs: u32,
    /// Unicast follow-ups by MID: each must run once.
    follow_ups: HashMap<u16, u32>,
}

struct Groupcast {
    roles: Vec<Role>,
    servers: Vec<Server>,
    window: Option<Duration>,
    handle: Option<RequestHandle>,
    /// Per source: the bytes delivered, whether the last block came, and how many
    /// first answers (a whole response or block 0) were delivered.
    got: HashMap<u8, (Vec<u8>, bool, u32)>,
    ended: u32,
    member_failed: u32,
    delivered_after_end: bool,
}

impl Groupcast {
    fn new(roles: Vec<Role>, window: Option<Duration>) -> Self {
        let servers = roles.iter().map(|_| Server::default()).collect();
        Groupcast {
            roles,
            servers,
            window,
            handle: None,
            got: HashMap::new(),
            ended: 0,
            member_failed: 0,
            delivered_after_end: false,
        }
    }
}

impl App<E, B, M, D, R> for Groupcast {
    fn incoming(
        &mut self,
        node: usize,
        now: Instant,
        from: u8,
        incoming: Incoming<'_>,
        ep: &mut SimEp,
    ) {
        match incoming {
            Incoming::Request { handle, message } => {
                assert_ne!(node, CLIENT);
                let server = &mut self.servers[node - 1];
                let follow_up = message.ty() == Type::Con;
                if follow_up {
                    *server.follow_ups.entry(message.message_id()).or_default() += 1;
                } else {
                    server.group_runs += 1;
                    server.arrived.get_or_insert(now);
                }
                match &self.roles[node - 1] {
                    Role::Body(body) => ep
                        .respond_block2(now, handle, &message, Code::CONTENT, body, |_| Ok(()))
                        .unwrap(),
                    Role::NotFound => ep
                        .respond(now, handle, Code::NOT_FOUND, |_| Ok(()))
                        .unwrap(),
                }
            }
            Incoming::Response {
                handle,
                message,
                block,
            } => {
                assert_eq!(node, CLIENT);
                assert_eq!(
                    Some(handle),
                    self.handle,
                    "answers come under the group's handle"
                );
                assert_eq!(
                    message.code(),
                    Code::CONTENT,
                    "only useful answers are sent"
                );
                if self.ended > 0 {
                    self.delivered_after_end = true;
                }
                let Role::Body(body) = &self.roles[from as usize - 1] else {
                    panic!("server {from} has nothing to say, yet answered");
                };
                let entry = self.got.entry(from).or_default();
                let (offset, last) = block.map_or((0, true), |b| (b.offset, b.last));
                if offset == 0 {
                    entry.2 += 1;
                }
                assert_eq!(
                    offset,
                    entry.0.len(),
                    "server {from}: blocks in order, once each"
                );
                entry.0.extend_from_slice(message.payload());
                assert_eq!(
                    &entry.0[..],
                    &body[..entry.0.len()],
                    "server {from}: its own bytes only"
                );
                entry.1 |= last;
            }
        }
    }

    fn event(&mut self, node: usize, _now: Instant, event: Event, _ep: &mut SimEp) {
        assert_eq!(node, CLIENT, "servers have nothing to report: {event}");
        match event {
            Event::GroupEnded(h) => {
                assert_eq!(Some(h), self.handle);
                self.ended += 1;
            }
            Event::MemberFailed(h) => {
                assert_eq!(Some(h), self.handle);
                assert_eq!(self.ended, 0, "a member fails before the request ends");
                self.member_failed += 1;
            }
            other => panic!("unexpected event {other}"),
        }
    }

    fn tick(&mut self, node: usize, now: Instant, ep: &mut SimEp) -> Option<Instant> {
        if node == CLIENT && self.handle.is_none() {
            let options = RequestOptions {
                group: true,
                non_confirmable: true,
                block2_szx: Some(2),
                timeout: self.window,
                ..RequestOptions::default()
            };
            let h = ep
                .request(now, GROUP, Code::GET, &options, |b| {
                    b.uri_path("/sensor").map(drop)
                })
                .unwrap();
            self.handle = Some(h);
        }
        None
    }
}

/// One run; returns the app, the simulation's trace and the Leisure used.
fn run(
    roles: Vec<Role>,
    link: Link,
    leisure: Duration,
    window: Option<Duration>,
    seed: u64,
) -> (Groupcast, Vec<common::sim::Sent>, Vec<SimEp>) {
    let n = roles.len();
    let nodes = (0..=n)
        .map(|i| {
            SimEp::new(Config {
                seed: seed.wrapping_mul(31).wrapping_add(i as u64),
                ..Config::default()
            })
            .unwrap()
        })
        .collect();
    let mut sim = Sim::new(nodes, link, seed);
    sim.trace = Some(Vec::new());
    sim.groups.push(Group {
        address: GROUP,
        members: (1..=n as u8).collect(),
        leisure,
    });
    let mut app = Groupcast::new(roles, window);
    let quiet = sim.run(&mut app, Instant::ZERO + Duration::from_secs(3600), 200_000);
    assert!(quiet, "the run goes quiet");
    let trace = sim.trace.take().unwrap();
    (app, trace, sim.nodes)
}

/// The checks every run must pass; returns each answering server's delay after the
/// request reached it.
fn check(
    app: &Groupcast,
    trace: &[common::sim::Sent],
    nodes: &[SimEp],
    leisure: Duration,
) -> Vec<Duration> {
    let mut delays = Vec::new();
    let mut group_token = None;
    for (_, from, to, bytes) in trace {
        let msg = Message::parse(bytes).unwrap();
        if *from as usize == CLIENT && *to == GROUP {
            assert_eq!(msg.ty(), Type::Non, "a group request is NON");
            assert!(group_token.is_none(), "the group request is sent once");
            group_token = Some(msg.token().to_vec());
        }
    }
    let group_token = group_token.expect("the group request went out");
    for (i, server) in app.servers.iter().enumerate() {
        let node = (i + 1) as u8;
        assert!(
            server.group_runs <= 1,
            "server {node} ran the group request {} times",
            server.group_runs
        );
        assert!(
            server.follow_ups.values().all(|&n| n == 1),
            "server {node}: a follow-up ran twice"
        );
        let mut answers = 0;
        for (at, from, to, bytes) in trace.iter().filter(|t| t.1 == node) {
            let msg = Message::parse(bytes).unwrap();
            assert_ne!(msg.ty(), Type::Rst, "server {node} sent an RST");
            assert!(
                msg.code().is_success() || msg.code() == Code::EMPTY,
                "server {node} sent {}",
                msg.code()
            );
            assert_eq!(*to as usize, CLIENT);
            let _ = from;
            if msg.token() == group_token && msg.ty() == Type::Non {
                answers += 1;
                let arrived = server.arrived.expect("answered, so it arrived");
                let delay = at.saturating_duration_since(arrived);
                assert!(
                    delay < leisure,
                    "server {node} answered {delay:?} after, Leisure {leisure:?}"
                );
                delays.push(delay);
            }
        }
        assert!(
            answers <= 1,
            "server {node} answered the group request {answers} times"
        );
        if matches!(app.roles[i], Role::NotFound) {
            assert_eq!(answers, 0, "server {node} has nothing useful to say");
        }
    }
    for (source, (_, _, firsts)) in &app.got {
        assert_eq!(
            *firsts, 1,
            "server {source}'s answer delivered {firsts} times"
        );
    }
    assert_eq!(app.ended, 1, "the group request ends exactly once");
    assert!(
        !app.delivered_after_end,
        "nothing is delivered after the end"
    );
    let incomplete = app.got.values().filter(|(_, last, _)| !last).count() as u32;
    assert_eq!(
        app.member_failed, incomplete,
        "each incomplete answer's follow-up failed, once"
    );
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(
            node.exchanges_in_flight(),
            0,
            "node {i} holds records at the end"
        );
    }
    delays
}

fn roles(spec: &[(bool, u16)]) -> Vec<Role> {
    spec.iter()
        .enumerate()
        .map(|(i, &(useful, len))| {
            if useful {
                Role::Body(
                    (0..len)
                        .map(|j| (j as u8).wrapping_mul(7).wrapping_add(i as u8))
                        .collect(),
                )
            } else {
                Role::NotFound
            }
        })
        .collect()
}

#[test]
fn group_get_on_a_perfect_link_collects_every_useful_answer_whole() {
    // Server 1 answers in one datagram, 2 and 4 block-wise (5 and 2 blocks), 3 has
    // nothing to say.
    let roles = roles(&[(true, 40), (true, 300), (false, 0), (true, 100)]);
    let leisure = Duration::from_secs(5);
    let (app, trace, nodes) = run(roles, Link::PERFECT, leisure, None, 7);
    check(&app, &trace, &nodes, leisure);
    for source in [1u8, 2, 4] {
        let (bytes, last, _) = &app.got[&source];
        let Role::Body(body) = &app.roles[source as usize - 1] else {
            unreachable!()
        };
        assert!(last, "server {source}'s answer is complete");
        assert_eq!(bytes, body);
    }
    assert!(!app.got.contains_key(&3));
    // Block follow-ups went by unicast to their server only, and as CON.
    let follow_ups: Vec<_> = trace
        .iter()
        .filter(|t| t.1 as usize == CLIENT && t.2 != GROUP)
        .map(|t| (t.2, Message::parse(&t.3).unwrap().ty()))
        .collect();
    assert_eq!(follow_ups.iter().filter(|f| f.0 == 2).count(), 4);
    assert_eq!(follow_ups.iter().filter(|f| f.0 == 4).count(), 1);
    assert!(
        follow_ups
            .iter()
            .all(|f| f.1 == Type::Con && f.0 != 1 && f.0 != 3)
    );
}

/// The delays of the answers, as fractions of Leisure, over many runs: within it,
/// and spread evenly over it (RFC 7252 §8.2 asks for a random point).
#[test]
fn answers_come_at_random_points_within_leisure() {
    let leisure = Duration::from_secs(5);
    let mut fractions = Vec::new();
    for seed in 0..200u64 {
        let roles = roles(&[(true, 10), (true, 20), (true, 30), (true, 40), (true, 50)]);
        let (app, trace, nodes) = run(roles, Link::PERFECT, leisure, None, seed);
        for d in check(&app, &trace, &nodes, leisure) {
            fractions.push(d.as_secs_f64() / leisure.as_secs_f64());
        }
    }
    assert_eq!(fractions.len(), 1000, "every server answered every time");
    let mut deciles = [0usize; 10];
    for f in &fractions {
        deciles[((f * 10.0) as usize).min(9)] += 1;
    }
    fractions.sort_by(f64::total_cmp);
    eprintln!(
        "Leisure 5 s, 1000 answers: min {:.3} s, median {:.3} s, max {:.3} s; per tenth of Leisure: {deciles:?}",
        fractions[0] * 5.0,
        fractions[500] * 5.0,
        fractions[999] * 5.0
    );
    for (i, &n) in deciles.iter().enumerate() {
        assert!(
            (60..=140).contains(&n),
            "tenth {i} of Leisure got {n} of 1000 answers: {deciles:?}"
        );
    }
}

/// Cases per run: 2,000 by default; `SIM_CASES=200000 cargo test --release --test
/// sim_group` for a longer search.
fn cases() -> u32 {
    std::env::var("SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn group_requests_survive_loss_duplication_and_reordering(
        spec in prop::collection::vec((any::<bool>(), 0u16..400), 1..=6),
        loss in 0u32..300,
        duplicate in 0u32..300,
        max_delay_ms in 1u64..400,
        leisure_ms in 100u64..6000,
        window_s in prop::option::of(6u64..15),
        seed in any::<u64>(),
    ) {
        let link = Link {
            loss,
            duplicate,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(max_delay_ms),
        };
        let leisure = Duration::from_millis(leisure_ms);
        let (app, trace, nodes) = run(roles(&spec), link, leisure, window_s.map(Duration::from_secs), seed);
        check(&app, &trace, &nodes, leisure);
    }
}
