//! Echo (RFC 9175 §2) and amplification mitigation (§2.4 item 3), in memory: the
//! server's rules, its table of verified peers under floods, and the client repeating a
//! request with the Echo value it was given.

mod common;

use coap_proto::wire::{Code, Message, Type};
use coap_proto::{
    Amplification, Config, Endpoint, Event, Incoming, IncomingHandle, Instant, RequestOptions,
};
use common::{Drained, drain, msg, parse, t};

/// A server whose peers are numbered, with 4 places for verified peers.
type Server = Endpoint<u8, 8, 10, 512, 64, 8192, 4, 4>;

const BIG: &[u8] = &[b'x'; 400];

/// Amplification counted over CoAP bytes alone (no header overhead), so that the
/// factor is checked to the byte on what these tests see.
fn server(seed: u64) -> Server {
    Server::new(Config {
        seed,
        amplification: Some(Amplification {
            overhead: 0,
            ..Amplification::RFC9175
        }),
        ..Config::default()
    })
    .unwrap()
}

fn get(mid: u16, token: &[u8], path: &str, echo: Option<&[u8]>) -> Vec<u8> {
    msg(Type::Con, Code::GET, mid, token, |b| {
        b.uri_path(path).unwrap();
        if let Some(v) = echo {
            b.echo(v).unwrap();
        }
    })
}

/// Feeds `request` from `peer`; a request the application sees is answered with `body`
/// (GET) or 2.04 (others). Returns what went out, and whether the application saw it.
fn serve(s: &mut Server, now: Instant, peer: u8, request: &[u8], body: &[u8]) -> (Drained, bool) {
    let delivered = match s.handle_datagram(now, peer, request) {
        Some(Incoming::Request { handle, message }) => {
            let code = message.code();
            answer(s, now, handle, code, body);
            true
        }
        _ => false,
    };
    (drain(s, now), delivered)
}

fn answer(s: &mut Server, now: Instant, handle: IncomingHandle, code: Code, body: &[u8]) {
    if code == Code::GET {
        s.respond(now, handle, Code::CONTENT, |b| b.payload(body).map(drop))
            .unwrap();
    } else {
        s.respond(now, handle, Code::CHANGED, |_| Ok(())).unwrap();
    }
}

/// The one datagram `out` holds.
fn only(out: &Drained) -> &[u8] {
    assert_eq!(out.sent.len(), 1, "{out:?}");
    &out.sent[0].1
}

#[test]
fn large_response_to_unverified_peer_becomes_401_with_echo_within_three_times() {
    let mut s = server(1);
    let request = get(1, &[0xaa, 0xbb], "/big", None);
    let (out, delivered) = serve(&mut s, t(0), 7, &request, BIG);
    assert!(delivered, "a GET runs: it is safe to run again");
    let reply = parse(only(&out));
    assert_eq!(reply.code(), Code::UNAUTHORIZED);
    assert_eq!(
        reply.ty(),
        Type::Ack,
        "piggybacked as the answer would have been"
    );
    let echo = reply.echo().unwrap().expect("an Echo value");
    assert_eq!(echo.len(), 8, "timestamp and 48 bits of MAC when they fit");
    assert!(reply.as_bytes().len() <= 3 * request.len());
    assert_eq!(s.stats().echo_challenges, 1);
    assert!(!s.is_verified(t(0), 7));
}

#[test]
fn request_repeated_with_the_echo_value_is_answered_and_verifies_its_peer() {
    let mut s = server(2);
    let (out, _) = serve(&mut s, t(0), 7, &get(1, &[1], "/big", None), BIG);
    let echo = parse(only(&out)).echo().unwrap().unwrap().to_vec();
    let (out, _) = serve(&mut s, t(500), 7, &get(2, &[2], "/big", Some(&echo)), BIG);
    let reply = parse(only(&out));
    assert_eq!((reply.code(), reply.payload()), (Code::CONTENT, BIG));
    assert!(s.is_verified(t(500), 7));
    // Later requests of the verified peer need no Echo; another peer's do.
    let (out, _) = serve(&mut s, t(60_000), 7, &get(3, &[3], "/big", None), BIG);
    assert_eq!(parse(only(&out)).code(), Code::CONTENT);
    let (out, _) = serve(&mut s, t(60_000), 8, &get(3, &[3], "/big", None), BIG);
    assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
    // Verification lasts `verified_for` (10 minutes), then the peer proves itself again.
    let (out, _) = serve(&mut s, t(620_000), 7, &get(4, &[4], "/big", None), BIG);
    assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
}

#[test]
fn echo_value_of_another_peer_a_forged_one_or_an_old_one_verifies_nothing() {
    let mut s = server(3);
    let (out, _) = serve(&mut s, t(0), 7, &get(1, &[1], "/big", None), BIG);
    let echo = parse(only(&out)).echo().unwrap().unwrap().to_vec();
    // Peer 8 replays peer 7's value (a spoofer who asked from its own address).
    let (out, _) = serve(&mut s, t(100), 8, &get(2, &[2], "/big", Some(&echo)), BIG);
    assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
    // One bit of the MAC flipped, and a value cut short.
    let mut forged = echo.clone();
    forged[7] ^= 1;
    let (out, _) = serve(&mut s, t(100), 7, &get(3, &[3], "/big", Some(&forged)), BIG);
    assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
    let (out, _) = serve(
        &mut s,
        t(100),
        7,
        &get(4, &[4], "/big", Some(&echo[..5])),
        BIG,
    );
    assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
    // Another server (another key) does not take it.
    let mut other = server(4);
    let (out, _) = serve(
        &mut other,
        t(100),
        7,
        &get(5, &[5], "/big", Some(&echo)),
        BIG,
    );
    assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
    assert!(!s.is_verified(t(100), 7) && !s.is_verified(t(100), 8));
    // Older than `verified_for` (10 minutes), on a server that has not seen it yet.
    let mut fresh = server(3);
    let (out, _) = serve(
        &mut fresh,
        t(601_000),
        7,
        &get(6, &[6], "/big", Some(&echo)),
        BIG,
    );
    assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
    // The genuine value, in time, from its peer.
    let (out, _) = serve(
        &mut s,
        t(599_000),
        7,
        &get(7, &[7], "/big", Some(&echo)),
        BIG,
    );
    assert_eq!(parse(only(&out)).code(), Code::CONTENT);
}

#[test]
fn small_responses_and_large_requests_need_no_verification() {
    let mut s = server(5);
    let (out, _) = serve(&mut s, t(0), 7, &get(1, &[1], "/small", None), b"21.5 C");
    assert_eq!(parse(only(&out)).code(), Code::CONTENT);
    // A request at least a third of the largest message: nothing can exceed 3 times it.
    let put = msg(Type::Con, Code::PUT, 2, &[2], |b| {
        b.uri_path("/x").unwrap();
        b.payload(&[0; 200]).unwrap();
    });
    let (out, delivered) = serve(&mut s, t(0), 7, &put, b"");
    assert!(delivered);
    assert_eq!(parse(only(&out)).code(), Code::CHANGED);
    assert_eq!(s.stats().echo_challenges, 0);
}

#[test]
fn challenge_fits_three_times_the_smallest_request_of_every_token_length() {
    for token_len in 0..=8usize {
        let mut s = server(6);
        let token = vec![0x5a; token_len];
        // A GET of `/` with no options at all: 4 bytes plus the token.
        let request = msg(Type::Con, Code::GET, 1, &token, |_| {});
        let (out, _) = serve(&mut s, t(0), 7, &request, BIG);
        let reply = only(&out);
        assert_eq!(parse(reply).code(), Code::UNAUTHORIZED);
        assert!(
            reply.len() <= 3 * request.len(),
            "token {token_len}: {} bytes for a {}-byte request",
            reply.len(),
            request.len()
        );
        let echo = parse(reply).echo().unwrap().unwrap().to_vec();
        assert!(echo.len() >= 6, "at least 32 bits of MAC (RFC 9175 §6)");
        // And the shortened value is accepted back.
        let again = msg(Type::Con, Code::GET, 2, &token, |b| {
            b.echo(&echo).unwrap();
        });
        let (out, _) = serve(&mut s, t(10), 7, &again, BIG);
        assert_eq!(parse(only(&out)).code(), Code::CONTENT, "token {token_len}");
    }
}

#[test]
fn post_from_unverified_peer_runs_once_and_its_small_answer_is_not_challenged() {
    let mut s = server(7);
    let post = msg(Type::Con, Code::POST, 0x77, &[1], |b| {
        b.uri_path("/journal").unwrap();
        b.payload(b"entry").unwrap();
    });
    let (out, delivered) = serve(&mut s, t(0), 7, &post, b"");
    assert!(
        delivered,
        "nothing to prove for an answer within the factor"
    );
    let first = only(&out).to_vec();
    assert_eq!(parse(&first).code(), Code::CHANGED);
    assert!(first.len() <= 3 * post.len());
    // Its duplicate gets the same answer and is not run again.
    let (out, delivered) = serve(&mut s, t(100), 7, &post, b"");
    assert!(!delivered);
    assert_eq!(only(&out), &first[..]);
    assert_eq!(s.stats().echo_challenges, 0);
}

#[test]
fn observe_registration_from_unverified_peer_is_served_within_budget_and_confirmed_by_an_ack() {
    // Counted over the wire (28 bytes of IPv4 and UDP on each datagram), as the std and
    // tokio servers count: room for a first block of 16 bytes.
    let mut s = Server::new(Config {
        seed: 8,
        amplification: Some(Amplification::RFC9175),
        ..Config::default()
    })
    .unwrap();
    let register = msg(Type::Con, Code::GET, 1, &[9], |b| {
        b.observe(0).unwrap();
        b.uri_path("/temp").unwrap();
    });
    let Some(Incoming::Request { handle, .. }) = s.handle_datagram(t(0), 7, &register) else {
        panic!("delivered: its answer is small")
    };
    let observing = s
        .respond_observe(t(0), handle, 0, Code::CONTENT, |b| {
            b.payload(b"21").map(drop)
        })
        .unwrap();
    assert!(observing);
    assert_eq!(parse(only(&drain(&mut s, t(0)))).code(), Code::CONTENT);
    // Until the observer acknowledges one, its notifications are CON, and a large
    // state goes as a first block within what the smallest registration allows.
    let body = [b'n'; 300];
    s.notify_body(t(1000), 0, false, Code::CONTENT, &body, |_| Ok(()))
        .unwrap();
    let out = drain(&mut s, t(1000));
    let n = parse(only(&out));
    assert_eq!(n.ty(), Type::Con, "unconfirmed: CON");
    assert!(n.block2().unwrap().is_some_and(|b| b.more()));
    // Within what the registration allows over the wire.
    let wire = n.as_bytes().len() + 28;
    assert!(
        wire <= 3 * (register.len() + 28),
        "{wire} bytes on the wire"
    );
    let ack = msg(Type::Ack, Code::EMPTY, n.message_id(), &[], |_| {});
    assert!(s.handle_datagram(t(1010), 7, &ack).is_none());
    drain(&mut s, t(1010));
    // Acknowledged: the next notification is NON and whole.
    s.notify_body(t(2000), 0, false, Code::CONTENT, b"22", |_| Ok(()))
        .unwrap();
    let out = drain(&mut s, t(2000));
    let n = parse(only(&out));
    assert_eq!((n.ty(), n.payload()), (Type::Non, &b"22"[..]));
    assert_eq!(s.observers(0), 1);
}

/// `peer`'s registration `register` of resource 0 at time 0, registered and answered.
fn observe(s: &mut Server, peer: u8, register: &[u8]) {
    let Some(Incoming::Request { handle, .. }) = s.handle_datagram(t(0), peer, register) else {
        panic!("the registration is delivered")
    };
    assert!(
        s.respond_observe(t(0), handle, 0, Code::CONTENT, |b| b
            .payload(b"1")
            .map(drop))
            .unwrap()
    );
    drain(s, t(0));
}

#[test]
fn spoofed_registration_ends_at_its_first_notification() {
    // A registration from a victim's address (peer 7), who knows nothing of it: the
    // victim rejects the CON notification with RST, which ends the observation.
    let mut s = server(20);
    let register = msg(Type::Con, Code::GET, 1, &[3, 4], |b| {
        b.observe(0).unwrap();
    });
    observe(&mut s, 7, &register);
    s.notify(t(1000), 0, false, Code::CONTENT, |b| {
        b.payload(b"2").map(drop)
    })
    .unwrap();
    let n = parse(only(&drain(&mut s, t(1000)))).message_id();
    let rst = msg(Type::Rst, Code::EMPTY, n, &[], |_| {});
    s.handle_datagram(t(1010), 7, &rst);
    drain(&mut s, t(1010));
    assert_eq!(s.observers(0), 0);
    s.notify(t(2000), 0, false, Code::CONTENT, |b| {
        b.payload(b"3").map(drop)
    })
    .unwrap();
    assert!(
        drain(&mut s, t(2000)).sent.is_empty(),
        "nothing more to the victim"
    );
}

#[test]
fn no_response_to_errors_suppresses_the_challenge_too() {
    let mut s = server(9);
    let request = msg(Type::Con, Code::GET, 1, &[1], |b| {
        b.uri_path("/big").unwrap();
        b.no_response(coap_proto::wire::NoResponse(0x08)).unwrap(); // not 4.xx (RFC 7967)
    });
    let (out, _) = serve(&mut s, t(0), 7, &request, BIG);
    let reply = parse(only(&out));
    assert_eq!((reply.ty(), reply.code()), (Type::Ack, Code::EMPTY));
}

#[test]
fn verified_table_full_gives_way_to_the_oldest_and_spoofed_floods_cannot_fill_it() {
    // 4 places. 40 peers prove themselves in turn: each is served after one
    // challenge, whoever held a place before.
    let mut s = server(10);
    let mut now = 0;
    let mut echoes = Vec::new();
    for peer in 1..=40u8 {
        now += 1000;
        let (out, _) = serve(
            &mut s,
            t(now),
            peer,
            &get(peer as u16, &[peer], "/big", None),
            BIG,
        );
        let echo = parse(only(&out)).echo().unwrap().unwrap().to_vec();
        let (out, _) = serve(
            &mut s,
            t(now),
            peer,
            &get(1000 + peer as u16, &[peer], "/big", Some(&echo)),
            BIG,
        );
        assert_eq!(parse(only(&out)).code(), Code::CONTENT, "peer {peer}");
        echoes.push(echo);
    }
    let verified: Vec<u8> = (1..=40).filter(|&p| s.is_verified(t(now), p)).collect();
    assert_eq!(
        verified,
        vec![37, 38, 39, 40],
        "the 4 verified last hold the places"
    );
    // 10,000 requests with made-up Echo values from as many spoofed sources: none gets
    // in, and no verified peer is pushed out.
    for i in 0..10_000u32 {
        let fake = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
        let peer = 41 + (i % 200) as u8;
        let request = get(i as u16, &[1], "/big", Some(&fake));
        let (out, _) = serve(&mut s, t(now), peer, &request, BIG);
        assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
    }
    let still: Vec<u8> = (1..=255).filter(|&p| s.is_verified(t(now), p)).collect();
    assert_eq!(still, vec![37, 38, 39, 40]);
    // Peer 1 lost its place: one more round trip, with a value it is given again.
    let (out, _) = serve(&mut s, t(now), 1, &get(5000, &[1], "/big", None), BIG);
    assert_eq!(parse(only(&out)).code(), Code::UNAUTHORIZED);
    let echo = parse(only(&out)).echo().unwrap().unwrap().to_vec();
    let (out, _) = serve(
        &mut s,
        t(now),
        1,
        &get(5001, &[1], "/big", Some(&echo)),
        BIG,
    );
    assert_eq!(parse(only(&out)).code(), Code::CONTENT);
    assert_eq!(s.exchanges_in_flight(), 0);
}

// ---- the client role ------------------------------------------------------------

type Client = Endpoint<u8, 8, 10, 512, 64, 8192, 4, 4>;

fn client(seed: u64) -> Client {
    Client::new(Config {
        seed,
        ..Config::default()
    })
    .unwrap()
}

/// Carries every datagram between client (peer 1) and server (peer 2) until both are
/// quiet, the server answering requests with `respond`; returns the client's events
/// and responses (code, payload) in order, and the requests the server saw.
#[allow(clippy::type_complexity)]
fn run(
    c: &mut Client,
    s: &mut Server,
    now: Instant,
    mut respond: impl FnMut(&mut Server, IncomingHandle, &Message<'_>),
) -> (Vec<(Code, Vec<u8>)>, Vec<Event>, Vec<Vec<u8>>) {
    let mut responses = Vec::new();
    let mut events = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..100 {
        let from_client = drain(c, now);
        events.extend(from_client.events);
        let mut quiet = from_client.sent.is_empty();
        for (_, d) in from_client.sent {
            seen.push(d.clone());
            if let Some(Incoming::Request { handle, message }) = s.handle_datagram(now, 1, &d) {
                respond(s, handle, &message);
            }
        }
        let from_server = drain(s, now);
        quiet &= from_server.sent.is_empty();
        for (_, d) in from_server.sent {
            if let Some(Incoming::Response { message, .. }) = c.handle_datagram(now, 2, &d) {
                responses.push((message.code(), message.payload().to_vec()));
            }
        }
        if quiet {
            return (responses, events, seen);
        }
    }
    panic!("no quiet after 100 rounds");
}

#[test]
fn client_repeats_a_request_once_with_the_echo_value_under_the_same_handle() {
    let (mut c, mut s) = (client(11), server(12));
    let handle = c
        .request(t(0), 2, Code::GET, &RequestOptions::default(), |b| {
            b.uri_path("/big").map(drop)
        })
        .unwrap();
    let (responses, _, seen) = run(&mut c, &mut s, t(0), |s, h, _| {
        answer(s, t(0), h, Code::GET, BIG)
    });
    assert_eq!(
        responses,
        vec![(Code::CONTENT, BIG.to_vec())],
        "one answer, the content"
    );
    assert_eq!(seen.len(), 2, "the request, then its repetition");
    let (first, second) = (parse(&seen[0]), parse(&seen[1]));
    assert_eq!(first.echo().unwrap(), None);
    assert!(second.echo().unwrap().is_some());
    assert_ne!(first.message_id(), second.message_id());
    assert_ne!(first.token(), second.token(), "a new token (RFC 9175 §4)");
    assert!(second.uri_path().matches("/big"));
    assert_eq!(c.exchanges_in_flight(), 0);
    let _ = handle;
}

#[test]
fn client_gives_a_second_401_with_echo_to_the_application() {
    // A server that wants a fresher request than the client can give: every request
    // is challenged. The client repeats once, then reports the 4.01.
    let (mut c, mut s) = (client(13), server(14));
    c.request(t(0), 2, Code::PUT, &RequestOptions::default(), |b| {
        b.uri_path("/lock")?.payload(b"0").map(drop)
    })
    .unwrap();
    let (responses, _, seen) = run(&mut c, &mut s, t(0), |s, h, _| {
        s.challenge(t(0), h).unwrap()
    });
    assert_eq!(seen.len(), 2);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].0, Code::UNAUTHORIZED);
}

#[test]
fn unverified_peer_gets_smaller_blocks_within_the_factor_and_no_challenge() {
    // A 1,500-byte body that the client asks for in 256-byte blocks. The server keeps
    // every answer within 3 times its request by choosing smaller blocks (RFC 7959
    // §2.2), a new server each round (nobody verified); the client follows the size
    // and the body arrives whole, under the one handle, without a 4.01.
    let body: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    let (mut c, _) = (client(15), ());
    let options = RequestOptions {
        block2_szx: Some(4),
        ..RequestOptions::default()
    };
    c.request(t(0), 2, Code::GET, &options, |b| {
        b.uri_path("/log").map(drop)
    })
    .unwrap();
    let mut got = Vec::new();
    let mut requests = 0;
    let mut challenged = 0;
    for round in 0..400u64 {
        let mut s = server(16);
        let now = t(round);
        let out = drain(&mut c, now);
        if out.sent.is_empty() {
            break;
        }
        for (_, d) in out.sent {
            requests += 1;
            if let Some(Incoming::Request { handle, message }) = s.handle_datagram(now, 1, &d) {
                let msg_copy = message.as_bytes().to_vec();
                s.respond_block2(now, handle, &parse(&msg_copy), Code::CONTENT, &body, |_| {
                    Ok(())
                })
                .unwrap();
            }
            for (_, r) in drain(&mut s, now).sent {
                assert!(r.len() <= 3 * d.len(), "{} bytes for {}", r.len(), d.len());
                if parse(&r).code() == Code::UNAUTHORIZED {
                    challenged += 1;
                }
                if let Some(Incoming::Response { message, block, .. }) =
                    c.handle_datagram(now, 2, &r)
                {
                    assert_eq!(message.code(), Code::CONTENT);
                    let b = block.expect("block-wise");
                    assert_eq!(b.offset, got.len());
                    got.extend_from_slice(message.payload());
                }
            }
        }
    }
    assert_eq!(got, body);
    assert_eq!(challenged, 0);
    assert!(
        requests > 6,
        "smaller blocks than asked: {requests} requests"
    );
    assert_eq!(c.exchanges_in_flight(), 0);
}

#[test]
fn block1_upload_post_from_unverified_peer_runs_once_unchallenged() {
    let (mut c, mut s) = (client(17), server(18));
    // Blocks of 32 bytes: small requests, whose answers could exceed 3 times them.
    let body: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
    let handle = c
        .request_upload(t(0), 2, Code::POST, &RequestOptions::default(), 1, |b| {
            b.uri_path("/up").map(drop)
        })
        .unwrap();
    let mut assembler = coap_proto::block::Block1Assembler::<u8, 2, 2048>::new();
    let mut runs = 0;
    let mut delivered = None;
    for round in 0..200u64 {
        let now = t(round);
        let out = drain(&mut c, now);
        for e in &out.events {
            if let Event::BlockNeeded { handle: h, .. } = e {
                c.send_body_block(now, *h, &body).unwrap();
            }
        }
        let out = if out.sent.is_empty() {
            drain(&mut c, now)
        } else {
            out
        };
        if out.sent.is_empty() && delivered.is_some() {
            break;
        }
        for (_, d) in out.sent {
            if let Some(Incoming::Request { handle, message }) = s.handle_datagram(now, 1, &d) {
                let request = message.as_bytes().to_vec();
                if let Ok(Some(whole)) =
                    s.assemble_block1(now, handle, &parse(&request), &mut assembler)
                {
                    runs += 1;
                    assert_eq!(whole.body, &body[..]);
                    let echo = whole.echo;
                    s.respond(now, handle, Code::CHANGED, |b| {
                        if let Some(e) = echo {
                            b.block1(e)?;
                        }
                        Ok(())
                    })
                    .unwrap();
                }
            }
            for (_, r) in drain(&mut s, now).sent {
                if let Some(Incoming::Response {
                    message, handle: h, ..
                }) = c.handle_datagram(now, 2, &r)
                {
                    assert_eq!(h, handle);
                    delivered = Some(message.code());
                }
            }
        }
    }
    assert_eq!(delivered, Some(Code::CHANGED));
    assert_eq!(runs, 1, "the POST ran once");
    assert_eq!(
        s.stats().echo_challenges,
        0,
        "2.31 and 2.04 fit within the factor"
    );
}

#[test]
fn stats_display_counts_echo_challenges() {
    let mut s = server(19);
    serve(&mut s, t(0), 7, &get(1, &[1], "/big", None), BIG);
    assert!(
        s.stats().to_string().contains(", 1 Echo challenges,"),
        "{}",
        s.stats()
    );
}

#[test]
fn burst_of_verifications_in_one_tick_evicts_only_the_oldest() {
    // 4 places, 10 peers verified within the same clock tick, in turn: the table keeps
    // the 4 verified last, each newcomer pushing out the one verified longest ago (not
    // the one that took the lowest place, which was just verified).
    let mut s = server(21);
    let mut echoes = Vec::new();
    for peer in 1..=10u8 {
        let (out, _) = serve(
            &mut s,
            t(0),
            peer,
            &get(peer as u16, &[peer], "/big", None),
            BIG,
        );
        echoes.push(parse(only(&out)).echo().unwrap().unwrap().to_vec());
    }
    for peer in 1..=10u8 {
        let request = get(
            100 + peer as u16,
            &[peer],
            "/big",
            Some(&echoes[peer as usize - 1]),
        );
        let (out, _) = serve(&mut s, t(1), peer, &request, BIG);
        assert_eq!(parse(only(&out)).code(), Code::CONTENT, "peer {peer}");
        let verified: Vec<u8> = (1..=10).filter(|&p| s.is_verified(t(1), p)).collect();
        let oldest = peer.saturating_sub(3).max(1);
        assert_eq!(
            verified,
            (oldest..=peer).collect::<Vec<_>>(),
            "after peer {peer}"
        );
    }
}

#[test]
fn a_notification_that_fits_no_block_of_a_tiny_budget_ends_only_that_observation() {
    // Counted over CoAP bytes alone, a 5-byte registration (no token, no path) allows
    // 15 bytes: a 10-byte state fits neither whole nor as a 16-byte block. The
    // observation ends (its client registers again, RFC 7641 §3.3.1); nothing panics
    // and the other observer is notified.
    let mut s = server(22);
    for (peer, token) in [(7u8, &[][..]), (8, &[1, 2, 3, 4][..])] {
        let register = msg(Type::Con, Code::GET, 1, token, |b| {
            b.observe(0).unwrap();
            if !token.is_empty() {
                b.uri_path("/a-longer-path-for-a-larger-budget").unwrap();
            }
        });
        observe(&mut s, peer, &register);
    }
    let sent = s
        .notify_body(t(1000), 0, false, Code::CONTENT, b"0123456789", |_| Ok(()))
        .unwrap();
    assert_eq!(sent.sent, 1);
    let out = drain(&mut s, t(1000));
    assert_eq!(out.sent.len(), 1);
    assert_eq!(out.sent[0].0, 8);
    assert_eq!(s.observers(0), 1);
}
