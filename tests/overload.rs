//! Overload never breaks a promise: floods against the endpoint's bounded tables, with
//! the default capacities of the adapters and with small ones. A handler runs once per
//! live non-idempotent request, a duplicate gets byte-identical bytes, requests answered
//! at once are served however many late-answered ones wait, and every refusal carries a
//! Max-Age that is the real time until a place frees.

mod common;

use coap_proto::wire::{Code, Message, Type};
use coap_proto::{Config, Endpoint, Event, Incoming, IncomingHandle, Instant};
use common::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// The capacities the std and tokio adapters use, with numbered peers.
type Default8 = Endpoint<u8>;
/// Its exchange records, less the two kept for requests answered at once.
const DEFERRABLE: usize = 64 - 2;
/// One peer's share of those (half, rounded up).
const PEER_SHARE: usize = DEFERRABLE.div_ceil(2);
/// Its dedup entries, and one peer's share of them.
const DEDUP: usize = 512;
const DEDUP_SHARE: usize = DEDUP / 2;

const LIFETIME_S: u64 = 247;

fn con(code: Code, mid: u16, token: &[u8], path: &str) -> Vec<u8> {
    msg(Type::Con, code, mid, token, |b| {
        b.uri_path(path).unwrap();
    })
}

fn deliver<
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
    from: P,
    bytes: &[u8],
) -> Option<IncomingHandle> {
    match ep.handle_datagram(now, from, bytes) {
        Some(Incoming::Request { handle, .. }) => Some(handle),
        _ => None,
    }
}

/// The datagrams of one drain sent to `to`.
fn sent_to(out: &Drained, to: u8) -> Vec<Vec<u8>> {
    out.sent
        .iter()
        .filter(|(p, _)| *p == to)
        .map(|(_, d)| d.clone())
        .collect()
}

#[test]
fn post_retransmitted_among_large_replies_runs_its_handler_once() {
    // The hostile client of the issue: one CON POST sent 100 times with the same
    // message ID, a GET with a 1 KiB reply between copies, a second between copies.
    let mut server = Default8::new(config(2)).unwrap();
    let post = con(Code::POST, 7, &[0xaa], "log");
    let h = deliver(&mut server, t(0), CLIENT, &post).expect("delivered once");
    server
        .respond(t(0), h, Code::CREATED, |b| b.payload(b"entry 1").map(drop))
        .unwrap();
    let first = sent_to(&drain(&mut server, t(0)), CLIENT);
    assert_eq!(first.len(), 1);
    let mut runs = 1;
    for i in 1..100u16 {
        let now = t(i as u64 * 1000);
        let get = con(Code::GET, 1000 + i, &[i as u8], "example_data");
        let g = deliver(&mut server, now, 3, &get).expect("GETs are served");
        server
            .respond(now, g, Code::CONTENT, |b| {
                b.payload(&[b'x'; 1024]).map(drop)
            })
            .unwrap();
        drain(&mut server, now);
        if deliver(&mut server, now, CLIENT, &post).is_some() {
            runs += 1;
        }
        let replay = sent_to(&drain(&mut server, now), CLIENT);
        assert_eq!(
            replay, first,
            "copy {i} gets the first reply, byte for byte"
        );
    }
    assert_eq!(runs, 1, "the POST handler ran once");
    assert!(server.stats().duplicates >= 99);
}

#[test]
fn post_answered_late_is_acknowledged_again_never_delivered_again() {
    // The same with a POST whose answer comes later, while requests with large replies
    // and late-answered ones flow by, more than the tables hold.
    let mut server = Default8::new(config(2)).unwrap();
    let post = con(Code::POST, 9, &[0xbb], "async");
    let h = deliver(&mut server, t(0), CLIENT, &post).unwrap();
    let acks = sent_to(&drain(&mut server, t(0)), CLIENT);
    assert_eq!(acks.len(), 1, "empty ACK");
    let mut pending = vec![];
    for i in 1..60u16 {
        let now = t(i as u64 * 1000);
        let other = 10 + (i % 20) as u8;
        if let Some(g) = deliver(&mut server, now, other, &con(Code::GET, i, &[1], "slow")) {
            pending.push(g); // answered never: late-answered requests pile up
        }
        let get = con(Code::GET, 5000 + i, &[2], "big");
        let g = deliver(&mut server, now, 3, &get).expect("answered-at-once GETs are served");
        server
            .respond(now, g, Code::CONTENT, |b| {
                b.payload(&[b'y'; 1000]).map(drop)
            })
            .unwrap();
        drain(&mut server, now);
        assert!(
            deliver(&mut server, now, CLIENT, &post).is_none(),
            "never again"
        );
        assert_eq!(sent_to(&drain(&mut server, now), CLIENT), acks);
    }
    server
        .respond(t(60_000), h, Code::CHANGED, |_| Ok(()))
        .unwrap();
    let separate = sent_to(&drain(&mut server, t(60_000)), CLIENT);
    assert_eq!(separate.len(), 1);
    assert_eq!(parse(&separate[0]).code(), Code::CHANGED);
}

#[test]
fn posts_beyond_what_can_be_kept_are_refused_before_they_run() {
    // Every dedup entry holds a live POST: a new one is refused with 5.03 whose
    // Max-Age is the time until the oldest entry expires, and it is not delivered.
    let mut server = Default8::new(config(2)).unwrap();
    let mut accepted = 0;
    for i in 0..(DEDUP as u16 + 10) {
        // One every 100 ms: all within EXCHANGE_LIFETIME of the first.
        let now = t(i as u64 * 100);
        let peer = 10 + (i % 8) as u8;
        match deliver(&mut server, now, peer, &con(Code::POST, i, &[1], "log")) {
            Some(h) => {
                accepted += 1;
                server.respond(now, h, Code::CREATED, |_| Ok(())).unwrap();
                drain(&mut server, now);
            }
            None => {
                let out = drain(&mut server, now);
                let r = parse(&out.sent[0].1);
                assert_eq!(r.code(), Code::SERVICE_UNAVAILABLE);
                // The first POST came at 0 s and frees its entry at 247 s.
                let left_ms = LIFETIME_S * 1000 - i as u64 * 100;
                assert_eq!(r.max_age(), Ok(Some(left_ms.div_ceil(1000) as u32)));
            }
        }
    }
    assert_eq!(accepted, DEDUP, "as many as there are dedup entries");
    // When the Max-Age said, a place is free again.
    let h = deliver(
        &mut server,
        t(LIFETIME_S * 1000),
        99,
        &con(Code::POST, 77, &[1], "log"),
    );
    assert!(h.is_some());
    server.dedup().check();
}

#[test]
fn one_peer_gets_4_29_over_its_share_of_posts_while_others_are_served() {
    let mut server = Default8::new(config(2)).unwrap();
    let mut refused_at = None;
    for i in 0..(DEDUP_SHARE as u16 + 4) {
        let now = t(i as u64 * 100);
        match deliver(&mut server, now, 66, &con(Code::POST, i, &[1], "log")) {
            Some(h) => {
                server.respond(now, h, Code::CREATED, |_| Ok(())).unwrap();
                drain(&mut server, now);
            }
            None => {
                let r = drain(&mut server, now).sent[0].1.clone();
                assert_eq!(parse(&r).code(), Code::TOO_MANY_REQUESTS);
                refused_at.get_or_insert(i);
            }
        }
    }
    assert_eq!(
        refused_at,
        Some(DEDUP_SHARE as u16),
        "half of the entries per peer"
    );
    let h = deliver(
        &mut server,
        t(100_000),
        67,
        &con(Code::POST, 1, &[1], "log"),
    );
    assert!(h.is_some(), "another peer is served");
    assert_eq!(server.stats().over_share, 4);
}

#[test]
fn late_answered_flood_from_many_peers_leaves_requests_answered_at_once_served() {
    // 100 requests to a resource that answers late (never, here), from 100 peers, while
    // one more client sends GETs that are answered at once.
    let mut server = Default8::new(config(2)).unwrap();
    let mut held = 0;
    let mut refusals = vec![];
    for i in 0..100u16 {
        let now = t(i as u64 * 500);
        let peer = 100 + i as u8;
        if deliver(&mut server, now, peer, &con(Code::GET, i, &[1], "async")).is_some() {
            held += 1;
        }
        let get = con(Code::GET, 1000 + i, &[2], "");
        let h = deliver(&mut server, now, CLIENT, &get).expect("GET / always gets a slot");
        server
            .respond(now, h, Code::CONTENT, |b| b.payload(b"hello").map(drop))
            .unwrap();
        let out = drain(&mut server, now);
        let mine = sent_to(&out, CLIENT);
        assert_eq!(mine.len(), 1);
        assert_eq!(parse(&mine[0]).code(), Code::CONTENT);
        for (to, d) in &out.sent {
            let m = parse(d);
            if *to != CLIENT && m.code() == Code::SERVICE_UNAVAILABLE {
                refusals.push((now, m.max_age().unwrap().unwrap()));
            }
        }
    }
    assert_eq!(
        held, 100,
        "all delivered; those over the quota refused after"
    );
    assert_eq!(refusals.len(), 100 - DEFERRABLE);
    for (now, max_age) in refusals {
        // The first deferred request expires 247 s after it came at 0 s.
        let real = (LIFETIME_S * 1000 - now.as_micros() / 1000).div_ceil(1000);
        assert_eq!(max_age as u64, real, "Max-Age at {now}");
    }
}

#[test]
fn one_peer_over_its_share_of_late_answers_gets_4_29() {
    let mut server = Default8::new(config(2)).unwrap();
    let mut codes = vec![];
    for i in 0..(PEER_SHARE as u16 + 3) {
        let now = t(i as u64 * 1000);
        deliver(&mut server, now, 50, &con(Code::GET, i, &[1], "async")).unwrap();
        let out = drain(&mut server, now);
        codes.push(parse(&out.sent[0].1).code());
    }
    // Half the places may be held late by one peer: then 4.29 until its first expires.
    assert_eq!(&codes[..PEER_SHARE], &[Code::EMPTY; PEER_SHARE]);
    assert_eq!(&codes[PEER_SHARE..], &[Code::TOO_MANY_REQUESTS; 3]);
    let now = t(100_000);
    deliver(&mut server, now, 50, &con(Code::GET, 999, &[1], "async")).unwrap();
    let out = drain(&mut server, now);
    let r = parse(&out.sent[0].1);
    assert_eq!(r.code(), Code::TOO_MANY_REQUESTS);
    assert_eq!(r.max_age(), Ok(Some(LIFETIME_S as u32 - 100)));
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::RequestRefused(_)))
    );
    // Another peer still gets its late answers.
    deliver(&mut server, now, 51, &con(Code::GET, 1, &[1], "async")).unwrap();
    assert_eq!(
        parse(&drain(&mut server, now).sent[0].1).code(),
        Code::EMPTY
    );
}

#[test]
fn may_defer_tells_the_handler_before_it_acts() {
    let mut server = Default8::new(config(2)).unwrap();
    for i in 0..PEER_SHARE as u16 {
        let h = deliver(&mut server, t(0), 50, &con(Code::GET, i, &[1], "async")).unwrap();
        assert!(server.may_defer(h));
        drain(&mut server, t(0));
    }
    let h = deliver(&mut server, t(0), 50, &con(Code::POST, 999, &[1], "async")).unwrap();
    assert!(!server.may_defer(h), "over its share");
    // Answered at once, it is served normally.
    server.respond(t(0), h, Code::CHANGED, |_| Ok(())).unwrap();
    let out = drain(&mut server, t(0));
    assert_eq!(parse(&out.sent[0].1).code(), Code::CHANGED);
    assert!(out.events.is_empty());
}

// ---- property: no live protected entry is lost, no handler runs twice ---------------

#[derive(Clone, Debug)]
enum Op {
    /// A new request from `peer`.
    New {
        peer: u8,
        post: bool,
        con: bool,
        answer: Answer,
        reply_len: u16,
    },
    /// A copy of request `which` (an index into those sent so far).
    Duplicate { which: usize },
    /// The late answer to request `which`, if it is still waiting.
    AnswerLate { which: usize },
    /// The clock moves (sometimes backwards: the endpoint clamps it).
    Advance { ms: i32 },
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Now,
    Later,
    Never,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<bool>(), prop::bool::weighted(0.8), 0u8..3, 0u16..900).prop_map(
            |(peer, post, con, a, reply_len)| Op::New {
                peer,
                post,
                con,
                answer: [Answer::Now, Answer::Later, Answer::Never][a as usize],
                reply_len,
            }
        ),
        3 => any::<usize>().prop_map(|which| Op::Duplicate { which }),
        1 => any::<usize>().prop_map(|which| Op::AnswerLate { which }),
        2 => (-5_000i32..120_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

struct Sent {
    peer: u8,
    bytes: Vec<u8>,
    post: bool,
    con: bool,
    /// When it was first handed to the application.
    delivered_at: Option<Instant>,
    handle: Option<IncomingHandle>,
    /// The piggybacked reply it got, to be replayed byte for byte.
    reply: Option<Vec<u8>>,
}

fn run<const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>(
    seed: u64,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut server = Endpoint::<u8, E, B, M, D, R>::new(Config {
        seed,
        ..Config::default()
    })
    .unwrap();
    // §4.5: duplicates of a CON are recognized for EXCHANGE_LIFETIME, of a NON for
    // NON_LIFETIME.
    let lifetime_of =
        |con: bool| std::time::Duration::from_secs(if con { LIFETIME_S } else { 145 });
    let mut now = Instant::ZERO;
    let mut sent: Vec<Sent> = vec![];
    let mut runs: HashMap<(u8, u16), u32> = HashMap::new();
    let mut next_mid = 0u16;
    for op in ops {
        let (index, fresh) = match *op {
            Op::New {
                peer,
                post,
                con,
                answer,
                reply_len,
            } => {
                next_mid = next_mid.wrapping_add(1);
                let ty = if con { Type::Con } else { Type::Non };
                let code = if post { Code::POST } else { Code::GET };
                let bytes = msg(ty, code, next_mid, &[peer, 1], |b| {
                    b.uri_path("r").unwrap();
                });
                sent.push(Sent {
                    peer,
                    bytes,
                    post,
                    con,
                    delivered_at: None,
                    handle: None,
                    reply: None,
                });
                (sent.len() - 1, Some((answer, reply_len)))
            }
            Op::Duplicate { which } if !sent.is_empty() => (which % sent.len(), None),
            Op::AnswerLate { which } if !sent.is_empty() => {
                let n = sent.len();
                let s = &mut sent[which % n];
                if let Some(h) = s.handle.take() {
                    let _ = server.respond(now, h, Code::CHANGED, |_| Ok(()));
                }
                drain(&mut server, now);
                continue;
            }
            Op::Advance { ms } => {
                if ms >= 0 {
                    now = now + std::time::Duration::from_millis(ms as u64);
                }
                let at = Instant::from_micros(now.as_micros().saturating_sub(if ms < 0 {
                    (-ms) as u64 * 1000
                } else {
                    0
                }));
                drain(&mut server, at); // a clock running late is clamped
                continue;
            }
            _ => continue,
        };
        let s = &sent[index];
        let (peer, bytes) = (s.peer, s.bytes.clone());
        let mid = Message::parse(&bytes).unwrap().message_id();
        let delivered = match server.handle_datagram(now, peer, &bytes) {
            Some(Incoming::Request { handle, .. }) => Some(handle),
            _ => None,
        };
        let s = &mut sent[index];
        let lifetime = lifetime_of(s.con);
        if let Some(h) = delivered {
            let live = s.delivered_at.is_some_and(|at| now < at + lifetime);
            prop_assert!(
                !(s.post && live),
                "POST {mid} from {peer} delivered twice within EXCHANGE_LIFETIME"
            );
            *runs.entry((peer, mid)).or_default() += 1;
            s.delivered_at = Some(now);
            s.reply = None;
            match fresh.map(|f| f.0) {
                Some(Answer::Now) | None => {
                    let len = fresh.map_or(8, |f| f.1 as usize).min(M - 16);
                    server
                        .respond(now, h, Code::CHANGED, |b| {
                            b.payload(&vec![7; len]).map(drop)
                        })
                        .unwrap();
                }
                Some(Answer::Later) => s.handle = Some(h),
                Some(Answer::Never) => {}
            }
        }
        let out = drain(&mut server, now);
        let to_peer: Vec<_> = out
            .sent
            .iter()
            .filter(|(p, d)| {
                *p == peer && parse(d).message_id() == mid && parse(d).ty() == Type::Ack
            })
            .map(|(_, d)| d.clone())
            .collect();
        let s = &mut sent[index];
        if delivered.is_some() {
            if s.con && to_peer.len() == 1 && parse(&to_peer[0]).code() != Code::EMPTY {
                s.reply = Some(to_peer[0].clone());
            }
        } else if fresh.is_none() && s.post && s.con {
            // A duplicate of a live POST gets exactly its reply again.
            let live = s.delivered_at.is_some_and(|at| now < at + lifetime);
            if let (true, Some(reply)) = (live, &s.reply) {
                prop_assert_eq!(&to_peer, &vec![reply.clone()], "replay of POST {}", mid);
            }
        }
        server.dedup().check();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SIM_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(320)
    ))]

    #[test]
    fn no_live_post_is_processed_twice_or_loses_its_reply(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..300),
        sizes in 0u8..3,
    ) {
        match sizes {
            // The adapters' default capacities.
            0 => run::<64, 16, 1152, 512, 32768>(seed, &ops)?,
            // A small embedded configuration.
            1 => run::<8, 4, 256, 16, 1024>(seed, &ops)?,
            // Many records, few buffers and entries, a tight reply store.
            _ => run::<32, 3, 512, 6, 600>(seed, &ops)?,
        }
    }
}

// ---- Block1 assembly ----------------------------------------------------------------

use coap_proto::block::Block1Assembler;
use coap_proto::wire::Block;

/// Block `num` of an upload to /up with Request-Tag `tag`, 64-byte blocks.
fn block1(mid: u16, tag: u16, num: u32, more: bool) -> Vec<u8> {
    msg(Type::Con, Code::PUT, mid, &[1], |b| {
        b.uri_path("up").unwrap();
        b.request_tag(&tag.to_be_bytes()).unwrap();
        b.block1(Block::new(num, more, 2).unwrap()).unwrap();
        b.payload(&[num as u8; 64]).unwrap();
    })
}

/// Feeds one block; returns the response code, or `None` when the body completed.
fn upload_step<const N: usize, const CAP: usize>(
    server: &mut Default8,
    assembler: &mut Block1Assembler<u8, N, CAP>,
    now: Instant,
    peer: u8,
    bytes: &[u8],
) -> Option<Code> {
    let Some(Incoming::Request { handle, message }) = server.handle_datagram(now, peer, bytes)
    else {
        panic!("not delivered");
    };
    let done = server
        .assemble_block1(now, handle, &message, assembler)
        .unwrap()
        .map(|body| body.body.len());
    if let Some(len) = done {
        server
            .respond(now, handle, Code::CHANGED, |_| Ok(()))
            .unwrap();
        drain(server, now);
        assert!(len > 0);
        return None;
    }
    let out = drain(server, now);
    Some(parse(&out.sent[0].1).code())
}

#[test]
fn abandoned_uploads_never_lock_out_a_new_one() {
    // The issue's scenario: 200 uploads started and abandoned with distinct
    // Request-Tags (from 200 peers), then a new upload: it completes at once.
    let mut server = Default8::new(config(2)).unwrap();
    let mut assembler: Block1Assembler<u8, 4, 4096> = Block1Assembler::new();
    let mut mid = 0;
    for i in 0..200u16 {
        mid += 1;
        let peer = 10 + (i % 200) as u8;
        let code = upload_step(
            &mut server,
            &mut assembler,
            t(i as u64 * 10),
            peer,
            &block1(mid, i, 0, true),
        );
        assert_eq!(code, Some(Code::CONTINUE));
    }
    let now = t(2_000);
    for num in 0..3 {
        mid += 1;
        let code = upload_step(
            &mut server,
            &mut assembler,
            now,
            CLIENT,
            &block1(mid, 999, num, num < 2),
        );
        assert_eq!(code, if num < 2 { Some(Code::CONTINUE) } else { None });
    }
    assert!(assembler.evictions() >= 196);
}

#[test]
fn repeating_an_old_block_does_not_keep_an_upload_alive() {
    let mut server = Default8::new(config(2)).unwrap();
    let mut assembler: Block1Assembler<u8, 4, 4096> = Block1Assembler::new();
    let mut step =
        |now, bytes: Vec<u8>| upload_step(&mut server, &mut assembler, now, CLIENT, &bytes);
    step(t(0), block1(1, 5, 0, true));
    step(t(0), block1(2, 5, 1, true));
    // Block 1 again, with new message IDs, every 10 s. (Block 0 again would start the
    // body anew, RFC 7959 §2.5: a new upload, bounded like any other.)
    for k in 1..=9u16 {
        let code = step(t(k as u64 * 10_000), block1(2 + k, 5, 1, true));
        assert_eq!(code, Some(Code::CONTINUE));
    }
    // Idle since 0 s: dropped after MAX_TRANSMIT_WAIT (93 s); its next block gets 4.08.
    let code = step(t(100_000), block1(50, 5, 2, true));
    assert_eq!(code, Some(Code::REQUEST_ENTITY_INCOMPLETE));
}

#[test]
fn one_peer_over_its_share_of_uploads_gets_4_29_and_others_still_upload() {
    let mut server = Default8::new(config(2)).unwrap();
    let mut assembler: Block1Assembler<u8, 4, 4096> = Block1Assembler::new();
    for tag in 0..2u16 {
        let code = upload_step(
            &mut server,
            &mut assembler,
            t(tag as u64 * 1000),
            66,
            &block1(tag, tag, 0, true),
        );
        assert_eq!(code, Some(Code::CONTINUE));
    }
    let third = block1(9, 9, 0, true);
    let Some(Incoming::Request { handle, message }) = server.handle_datagram(t(5_000), 66, &third)
    else {
        panic!()
    };
    assert_eq!(
        server.assemble_block1(t(5_000), handle, &message, &mut assembler),
        Ok(None)
    );
    let r = drain(&mut server, t(5_000)).sent[0].1.clone();
    let r = parse(&r);
    assert_eq!(r.code(), Code::TOO_MANY_REQUESTS);
    // Its first body idles out at 93 s.
    assert_eq!(r.max_age(), Ok(Some(88)));
    for num in 0..3 {
        let code = upload_step(
            &mut server,
            &mut assembler,
            t(6_000),
            67,
            &block1(20 + num as u16, 1, num, num < 2),
        );
        assert_eq!(code, if num < 2 { Some(Code::CONTINUE) } else { None });
    }
}

#[test]
fn answers_given_at_once_find_a_buffer_while_con_responses_wait_for_acks() {
    // A small endpoint: 4 message buffers, 2 of them kept for answers that leave at
    // once. Separate CON responses to a client that never acknowledges hold the others.
    use coap_proto::{Error, ResponseMode, SmallEndpoint};
    let mut server = SmallEndpoint::<u8>::new(config(2)).unwrap();
    let mut late = vec![];
    for i in 0..3u16 {
        late.push(
            deliver(
                &mut server,
                t(0),
                40 + i as u8,
                &con(Code::GET, i, &[1], "slow"),
            )
            .unwrap(),
        );
    }
    drain(&mut server, t(0));
    let answer = |s: &mut SmallEndpoint<u8>, h| {
        s.respond_with(t(1), h, ResponseMode::Confirmable, Code::CONTENT, |b| {
            b.payload(b"late").map(drop)
        })
    };
    assert_eq!(answer(&mut server, late[0]), Ok(()));
    assert_eq!(answer(&mut server, late[1]), Ok(()));
    assert_eq!(answer(&mut server, late[2]), Err(Error::BuffersFull));
    drain(&mut server, t(1));
    for i in 0..20u16 {
        let now = t(2 + i as u64);
        let h = deliver(&mut server, now, CLIENT, &con(Code::GET, 100 + i, &[2], "")).unwrap();
        server
            .respond(now, h, Code::CONTENT, |b| b.payload(b"now").map(drop))
            .unwrap();
        let out = drain(&mut server, now);
        assert_eq!(sent_to(&out, CLIENT).len(), 1, "answered at once");
    }
    // Once a CON response is given up (or acknowledged), the waiting one can go.
    let mut now = t(30);
    let mut timed_out = 0;
    for _ in 0..50 {
        let out = drain(&mut server, now);
        timed_out += out
            .events
            .iter()
            .filter(|e| matches!(e, Event::ResponseTimedOut(_)))
            .count();
        if timed_out > 0 {
            break;
        }
        now = out.timeout.expect("retransmissions are scheduled");
    }
    assert!(timed_out > 0);
    let answer = |s: &mut SmallEndpoint<u8>, h| {
        s.respond_with(now, h, ResponseMode::Confirmable, Code::CONTENT, |b| {
            b.payload(b"late").map(drop)
        })
    };
    assert_eq!(answer(&mut server, late[2]), Ok(()));
}

// ---- server policies in the core ----------------------------------------------------

use coap_proto::block::KeptResponses;
use coap_proto::{RequestOptions, ResponseMode};

/// A client and a server endpoint; the server runs a counting POST handler whose
/// 3000-byte answer goes block-wise, with `kept` for the follow-ups.
fn post_exchange<const N: usize>(
    kept: &mut KeptResponses<u8, N, 4096>,
    clients: &[u8],
) -> (usize, Vec<Vec<u8>>, Vec<Code>) {
    let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let mut server = Default8::new(config(2)).unwrap();
    let mut eps: Vec<Default8> = clients
        .iter()
        .map(|&c| Default8::new(config(c as u64)).unwrap())
        .collect();
    let mut got = vec![vec![]; clients.len()];
    let mut last_codes = vec![Code::EMPTY; clients.len()];
    let mut runs = 0;
    for ep in eps.iter_mut() {
        let opts = RequestOptions {
            block2_szx: Some(2),
            ..RequestOptions::default()
        };
        ep.request(t(0), SERVER, Code::POST, &opts, |b| {
            b.uri_path("create")?;
            b.payload(b"go")?;
            Ok(())
        })
        .unwrap();
    }
    let mut now = t(0);
    for _ in 0..2000 {
        let mut idle = true;
        for (k, ep) in eps.iter_mut().enumerate() {
            for (_, d) in drain(ep, now).sent {
                idle = false;
                if let Some(Incoming::Request { handle, message }) =
                    server.handle_datagram(now, clients[k], &d)
                {
                    if !server
                        .respond_from_kept(now, handle, &message, kept)
                        .unwrap()
                    {
                        runs += 1;
                        server
                            .respond_block2_kept(
                                now,
                                handle,
                                &message,
                                Code::CREATED,
                                &body,
                                kept,
                                |b| {
                                    b.content_format(coap_proto::wire::ContentFormat::OCTET_STREAM)
                                        .map(drop)
                                },
                            )
                            .unwrap();
                    }
                }
            }
        }
        for (to, d) in drain(&mut server, now).sent {
            idle = false;
            let k = clients.iter().position(|&c| c == to).unwrap();
            if let Some(Incoming::Response { message, .. }) =
                eps[k].handle_datagram(now, SERVER, &d)
            {
                got[k].extend_from_slice(message.payload());
                last_codes[k] = message.code();
                if message.code() == Code::CREATED {
                    assert_eq!(
                        message.content_format(),
                        Ok(Some(coap_proto::wire::ContentFormat::OCTET_STREAM))
                    );
                    assert!(
                        message.etag().unwrap().is_some(),
                        "kept bodies carry an ETag"
                    );
                }
            }
        }
        if idle {
            break;
        }
        now = now + std::time::Duration::from_millis(1);
    }
    (runs, got, last_codes)
}

#[test]
fn post_with_a_blockwise_response_runs_its_handler_once_in_the_core() {
    let mut kept: KeptResponses<u8, 4, 4096> = KeptResponses::new();
    let (runs, got, codes) = post_exchange(&mut kept, &[CLIENT, 3, 4]);
    assert_eq!(runs, 3, "one run per client's POST, none per follow-up");
    let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    for (g, c) in got.iter().zip(codes) {
        assert_eq!(c, Code::CREATED);
        assert_eq!(g, &body, "every client got the whole body");
    }
    assert!(kept.is_empty(), "served to the end, then dropped");
}

#[test]
fn follow_up_whose_body_was_evicted_gets_4_08_and_no_second_run() {
    // Room for one kept body: the second client's POST evicts the first's body while
    // the first is still fetching; its next follow-up is told to start over.
    let mut kept: KeptResponses<u8, 1, 4096> = KeptResponses::new();
    let (runs, _got, codes) = post_exchange(&mut kept, &[CLIENT, 3]);
    assert_eq!(
        runs, 2,
        "the handler ran once per POST, never for a follow-up"
    );
    assert!(codes.contains(&Code::REQUEST_ENTITY_INCOMPLETE));
    assert!(kept.evictions() >= 1);
}

#[test]
fn abandoned_request_is_answered_5_00_in_the_ack_or_separately() {
    let mut server = Default8::new(config(2)).unwrap();
    let h = deliver(&mut server, t(0), CLIENT, &con(Code::POST, 1, &[9], "x")).unwrap();
    server.abandon(t(0), h).unwrap();
    let out = drain(&mut server, t(0));
    let r = parse(&out.sent[0].1);
    assert_eq!(
        (r.ty(), r.code(), r.token()),
        (Type::Ack, Code::INTERNAL_SERVER_ERROR, &[9][..])
    );
    // A duplicate gets the same answer; the handler is not asked again.
    assert!(deliver(&mut server, t(1), CLIENT, &con(Code::POST, 1, &[9], "x")).is_none());
    assert_eq!(drain(&mut server, t(1)).sent[0].1, out.sent[0].1);
    // Deferred first, then abandoned: a NON 5.00 after the empty ACK.
    let h = deliver(&mut server, t(2), CLIENT, &con(Code::GET, 2, &[8], "x")).unwrap();
    assert_eq!(
        parse(&drain(&mut server, t(2)).sent[0].1).code(),
        Code::EMPTY
    );
    server.abandon(t(3), h).unwrap();
    let r = drain(&mut server, t(3)).sent[0].1.clone();
    let r = parse(&r);
    assert_eq!(
        (r.ty(), r.code(), r.token()),
        (Type::Non, Code::INTERNAL_SERVER_ERROR, &[8][..])
    );
    assert_eq!(
        server.respond_with(t(3), h, ResponseMode::Auto, Code::CONTENT, |_| Ok(())),
        Err(coap_proto::Error::UnknownHandle)
    );
}

#[test]
fn expired_request_is_answered_5_00() {
    let mut server = Default8::new(config(2)).unwrap();
    deliver(&mut server, t(0), CLIENT, &con(Code::GET, 1, &[7], "x")).unwrap();
    drain(&mut server, t(0));
    let out = drain(&mut server, t(LIFETIME_S * 1000));
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::RequestExpired(_)))
    );
    let r = parse(&out.sent[0].1);
    assert_eq!(
        (r.ty(), r.code(), r.token()),
        (Type::Non, Code::INTERNAL_SERVER_ERROR, &[7][..])
    );
}

#[test]
fn many_requests_expiring_at_once_all_get_5_00() {
    // Twelve deferred requests from four clients expire at the same instant: more
    // refusals than the control queue has places for (4). Timers wait for a place
    // instead of dropping a refusal, so one drain sends all twelve and drops nothing.
    let mut server = Default8::new(config(2)).unwrap();
    let mut handles = Vec::new();
    for i in 0..12u8 {
        let from = 10 + i % 4;
        let h = deliver(
            &mut server,
            t(0),
            from,
            &con(Code::GET, i as u16, &[i], "x"),
        )
        .unwrap();
        handles.push(h);
        assert!(server.may_defer(h));
        drain(&mut server, t(0));
    }
    let out = drain(&mut server, t(LIFETIME_S * 1000));
    let expired = out
        .events
        .iter()
        .filter(|e| matches!(e, Event::RequestExpired(_)))
        .count();
    assert_eq!(expired, 12);
    // Besides the empty ACKs of the deferral, which fired in the same drain:
    let mut answered: Vec<(u8, u8)> = out
        .sent
        .iter()
        .filter(|(_, d)| parse(d).code() != Code::EMPTY)
        .map(|(to, d)| {
            let r = parse(d);
            assert_eq!((r.ty(), r.code()), (Type::Non, Code::INTERNAL_SERVER_ERROR));
            (*to, r.token()[0])
        })
        .collect();
    answered.sort();
    let mut expected: Vec<(u8, u8)> = (0..12u8).map(|i| (10 + i % 4, i)).collect();
    expected.sort();
    assert_eq!(answered, expected);
    assert_eq!(server.stats().control_dropped, 0);
}

#[test]
fn blockwise_get_gets_an_etag_from_the_endpoint() {
    let mut server = Default8::new(config(2)).unwrap();
    let body = [5u8; 3000];
    let mut etags = vec![];
    for num in 0..3u32 {
        let req = msg(Type::Con, Code::GET, num as u16, &[1], |b| {
            b.uri_path("big").unwrap();
            b.block2(coap_proto::wire::Block::new(num, false, 6).unwrap())
                .unwrap();
        });
        let Some(Incoming::Request { handle, message }) =
            server.handle_datagram(t(0), CLIENT, &req)
        else {
            panic!()
        };
        server
            .respond_block2(t(0), handle, &message, Code::CONTENT, &body, |_| Ok(()))
            .unwrap();
        let out = drain(&mut server, t(0));
        etags.push(parse(&out.sent[0].1).etag().unwrap().unwrap().to_vec());
    }
    assert_eq!(etags[0].len(), 8);
    assert!(
        etags.iter().all(|e| *e == etags[0]),
        "the same body, the same ETag"
    );
}
