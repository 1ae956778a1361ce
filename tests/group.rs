//! Group communication in memory (RFC 7252 §8): the server's rules for requests that
//! came to a group address, and the client's group requests, their follow-ups and how
//! they end.

mod common;

use std::time::Duration;

use coap_proto::wire::{Code, NoResponse, Type};
use coap_proto::{
    Amplification, Config, Endpoint, Error, Event, Incoming, Instant, RequestOptions,
};
use common::{Ep, drain, endpoint, msg, parse, t};

const LEISURE: Duration = Duration::from_secs(5);
const GROUP: u8 = 200;

fn group_options() -> RequestOptions<'static> {
    RequestOptions {
        group: true,
        non_confirmable: true,
        ..RequestOptions::default()
    }
}

/// Sends a group GET of `path` from client `c` at time 0; returns its handle and the
/// datagram that went to the group.
fn group_get<const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>(
    c: &mut Endpoint<u8, E, B, M, D, R>,
    path: &str,
) -> (coap_proto::RequestHandle, Vec<u8>) {
    let h = c
        .request(t(0), GROUP, Code::GET, &group_options(), |b| {
            b.uri_path(path).map(drop)
        })
        .unwrap();
    let out = drain(c, t(0));
    assert_eq!(out.sent.len(), 1);
    let (to, request) = out.sent[0].clone();
    assert_eq!((to, parse(&request).ty()), (GROUP, Type::Non));
    (h, request)
}

/// Feeds a group datagram; answers a request it delivers with `code` and `body`.
fn serve(s: &mut Ep, now: Instant, from: u8, datagram: &[u8], code: Code, body: &[u8]) -> bool {
    match s.handle_group_datagram(now, from, datagram, LEISURE) {
        Some(Incoming::Request { handle, .. }) => {
            s.respond(now, handle, code, |b| {
                if !body.is_empty() {
                    b.payload(body)?;
                }
                Ok(())
            })
            .unwrap();
            true
        }
        Some(other) => panic!("{other:?}"),
        None => false,
    }
}

#[test]
fn group_request_is_answered_once_at_a_point_within_leisure() {
    let mut s = endpoint(1);
    let request = msg(Type::Non, Code::GET, 0x10, &[1, 2], |b| {
        b.uri_path("/a").unwrap();
    });
    assert!(serve(&mut s, t(0), 1, &request, Code::CONTENT, b"hello"));
    // Held back: nothing goes now, only a deadline within Leisure.
    let out = drain(&mut s, t(0));
    assert!(out.sent.is_empty());
    let at = out.timeout.expect("the answer's moment");
    assert!(at < t(0) + LEISURE, "{at} within Leisure");
    // A duplicate of the request meanwhile is not run again.
    assert!(!serve(&mut s, t(1), 1, &request, Code::CONTENT, b"again"));
    let out = drain(&mut s, at);
    assert_eq!(out.sent.len(), 1);
    let (to, bytes) = &out.sent[0];
    let answer = parse(bytes);
    assert_eq!(
        (*to, answer.ty(), answer.code()),
        (1, Type::Non, Code::CONTENT)
    );
    assert_eq!(
        (answer.token(), answer.payload()),
        (&[1u8, 2][..], &b"hello"[..])
    );
    assert_eq!(s.exchanges_in_flight(), 0);
    assert_eq!(drain(&mut s, at + LEISURE).sent.len(), 0, "answered once");
}

#[test]
fn group_requests_get_no_rst_and_no_error_answers() {
    let mut s = endpoint(2);
    let now = t(0);
    // §8.2: a 4.04 from the application is not sent.
    let get = msg(Type::Non, Code::GET, 1, &[1], |b| {
        b.uri_path("/nothing").unwrap();
    });
    assert!(serve(&mut s, now, 1, &get, Code::NOT_FOUND, b""));
    // 5.00 neither.
    let get = msg(Type::Non, Code::GET, 2, &[2], |b| {
        b.uri_path("/broken").unwrap();
    });
    assert!(serve(
        &mut s,
        now,
        1,
        &get,
        Code::INTERNAL_SERVER_ERROR,
        b"oops"
    ));
    // The endpoint's own answers: 4.05 for an unassigned method, 5.05 for a proxy
    // request, RST for an unknown critical option, RST for a long token: none.
    let odd = msg(Type::Non, Code::new(0, 31).unwrap(), 3, &[3], |_| {});
    let proxy = msg(Type::Non, Code::GET, 4, &[4], |b| {
        b.option(coap_proto::wire::OptionNumber::PROXY_URI, b"coap://x/")
            .unwrap();
    });
    let critical = msg(Type::Non, Code::GET, 5, &[5], |b| {
        b.option(coap_proto::wire::OptionNumber(9), b"?").unwrap();
    });
    for datagram in [&odd, &proxy, &critical] {
        assert!(!serve(&mut s, now, 1, datagram, Code::CONTENT, b""));
    }
    // §8.1: a CON, an ACK, an RST, a ping, a response or garbage on a group address:
    // dropped without a word.
    let con = msg(Type::Con, Code::GET, 6, &[6], |b| {
        b.uri_path("/a").unwrap();
    });
    let ping = msg(Type::Con, Code::EMPTY, 7, &[], |_| {});
    let rst = msg(Type::Rst, Code::EMPTY, 8, &[], |_| {});
    let response = msg(Type::Non, Code::CONTENT, 9, &[9], |_| {});
    for datagram in [
        &con[..],
        &ping,
        &rst,
        &response,
        &[0x40, 0x01][..],
        &[0xff; 9],
    ] {
        assert!(!serve(&mut s, now, 1, datagram, Code::CONTENT, b""));
    }
    let out = drain(&mut s, now + LEISURE + LEISURE);
    assert!(out.sent.is_empty(), "sent {:?}", out.sent);
    assert!(out.events.is_empty());
    assert_eq!(s.exchanges_in_flight(), 0);
}

#[test]
fn group_request_with_no_response_gets_what_it_asked_for() {
    let mut s = endpoint(3);
    // No-Response: 2.xx (RFC 7967): the content is not sent either.
    let get = msg(Type::Non, Code::GET, 1, &[1], |b| {
        b.uri_path("/a").unwrap();
        b.no_response(NoResponse(NoResponse::SUPPRESS_2XX)).unwrap();
    });
    assert!(serve(&mut s, t(0), 1, &get, Code::CONTENT, b"x"));
    assert!(drain(&mut s, t(0) + LEISURE).sent.is_empty());
    assert_eq!(s.exchanges_in_flight(), 0);
}

#[test]
fn group_request_is_never_an_observation() {
    let mut s = endpoint(4);
    let get = msg(Type::Non, Code::GET, 1, &[1], |b| {
        b.observe(0).unwrap();
        b.uri_path("/time").unwrap();
    });
    let Some(Incoming::Request { handle, .. }) = s.handle_group_datagram(t(0), 1, &get, LEISURE)
    else {
        panic!("a request");
    };
    s.respond_observe(t(0), handle, 1, Code::CONTENT, |b| {
        b.payload(b"12:00").map(drop)
    })
    .unwrap();
    let out = drain(&mut s, t(0) + LEISURE);
    assert_eq!(
        parse(&out.sent[0].1).observe(),
        Ok(None),
        "answered, not registered"
    );
    assert_eq!(s.observers(1), 0);
}

#[test]
fn client_refuses_confirmable_observing_and_uploading_group_requests() {
    let mut c = endpoint(5);
    let con = RequestOptions {
        non_confirmable: false,
        ..group_options()
    };
    let observe = RequestOptions {
        observe: true,
        ..group_options()
    };
    let build = |_: &mut coap_proto::wire::MessageBuilder<'_>| Ok(());
    assert_eq!(
        c.request(t(0), GROUP, Code::GET, &con, build),
        Err(Error::NotForGroups)
    );
    assert_eq!(
        c.request(t(0), GROUP, Code::GET, &observe, build),
        Err(Error::NotForGroups)
    );
    assert_eq!(
        c.request_upload(t(0), GROUP, Code::PUT, &group_options(), 2, build),
        Err(Error::NotForGroups)
    );
    assert_eq!(c.exchanges_in_flight(), 0);
    assert!(Error::NotForGroups.to_string().contains("non-confirmable"));
}

#[test]
fn client_collects_answers_from_any_source_until_the_window_closes() {
    let mut c = endpoint(6);
    let h = c
        .request(t(0), GROUP, Code::GET, &group_options(), |b| {
            b.uri_path("/.well-known/core").map(drop)
        })
        .unwrap();
    let out = drain(&mut c, t(0));
    let (to, request) = out.sent[0].clone();
    assert_eq!((to, parse(&request).ty()), (GROUP, Type::Non));
    assert_eq!(
        out.timeout,
        Some(t(8000)),
        "the default window: Leisure + 3 s"
    );
    let token = parse(&request).token().to_vec();
    let answer = |mid: u16, body: &[u8]| {
        msg(Type::Non, Code::CONTENT, mid, &token, |b| {
            b.payload(body).unwrap();
        })
    };
    // Three members answer; one answer arrives twice; a member uses another's MID.
    let mut delivered = Vec::new();
    for (from, mid, body) in [
        (1u8, 0x100, "a"),
        (2, 0x200, "b"),
        (1, 0x100, "a"),
        (3, 0x100, "c"),
    ] {
        let datagram = answer(mid, body.as_bytes());
        match c.handle_datagram(t(100), from, &datagram) {
            Some(Incoming::Response {
                handle,
                message,
                block: None,
            }) => {
                assert_eq!(handle, h);
                delivered.push((from, message.payload().to_vec()));
            }
            None => {}
            other => panic!("{other:?}"),
        }
    }
    // Each member's answer once, the duplicate not at all.
    let expected: Vec<(u8, Vec<u8>)> = [(1, "a"), (2, "b"), (3, "c")]
        .into_iter()
        .map(|(from, body)| (from, body.as_bytes().to_vec()))
        .collect();
    assert_eq!(delivered, expected);
    assert_eq!(
        c.stats().duplicates,
        1,
        "the duplicate was recognised, not delivered"
    );
    let out = drain(&mut c, t(8000));
    assert_eq!(out.events, vec![Event::GroupEnded(h)]);
    assert_eq!(c.exchanges_in_flight(), 0);
    // A late answer is nobody's: a NON one is dropped.
    assert!(
        c.handle_datagram(t(8001), 4, &answer(0x400, b"d"))
            .is_none()
    );
    assert!(drain(&mut c, t(8001)).sent.is_empty());
}

#[test]
fn cancelling_a_group_request_ends_its_follow_ups_too() {
    let mut c = endpoint(7);
    let (h, request) = group_get(&mut c, "/big");
    let token = parse(&request).token().to_vec();
    // Member 1 answers block-wise: a unicast CON for block 1 goes to it.
    let first = msg(Type::Non, Code::CONTENT, 0x100, &token, |b| {
        b.block2(coap_proto::wire::Block::new(0, true, 2).unwrap())
            .unwrap();
        b.payload(&[7; 64]).unwrap();
    });
    assert!(c.handle_datagram(t(10), 1, &first).is_some());
    let out = drain(&mut c, t(10));
    assert_eq!(out.sent.len(), 1);
    let follow_up = parse(&out.sent[0].1);
    assert_eq!((out.sent[0].0, follow_up.ty()), (1, Type::Con));
    assert_eq!(follow_up.block2().unwrap().unwrap().num(), 1);
    assert_eq!(c.exchanges_in_flight(), 2);
    c.cancel(t(20), h).unwrap();
    assert_eq!(c.exchanges_in_flight(), 0);
    let out = drain(&mut c, t(60_000));
    assert!(out.sent.is_empty() && out.events.is_empty(), "{out:?}");
}

/// A server with amplification mitigation on answers a large response to an
/// unverified group requester with 4.01 and Echo; our client repeats the request to
/// that member alone, by unicast, and the answer comes under the group's handle.
#[test]
fn member_challenge_is_answered_by_unicast_under_the_group_handle() {
    type Server = Endpoint<u8, 8, 10, 512, 16, 2048>;
    let mut s = Server::new(Config {
        seed: 8,
        amplification: Some(Amplification::RFC9175),
        ..Config::default()
    })
    .unwrap();
    let mut c = endpoint(9);
    let (h, request) = group_get(&mut c, "/big");
    let big = [b'x'; 200];
    assert!(serve(&mut s, t(1), 0, &request, Code::CONTENT, &big));
    let out = drain(&mut s, t(1) + LEISURE);
    let challenge = parse(&out.sent[0].1);
    assert_eq!(challenge.code(), Code::UNAUTHORIZED);
    assert!(out.sent[0].1.len() <= 3 * request.len());
    // The client absorbs it and asks member 5 by unicast, with the value.
    let now = t(1) + LEISURE;
    assert!(c.handle_datagram(now, 5, &out.sent[0].1).is_none());
    let out = drain(&mut c, now);
    let (to, repeat) = out.sent[0].clone();
    assert_eq!((to, parse(&repeat).ty()), (5, Type::Con));
    assert!(parse(&repeat).echo().unwrap().is_some());
    let Some(Incoming::Request { handle, .. }) = s.handle_datagram(now, 0, &repeat) else {
        panic!("the repetition is delivered");
    };
    s.respond(now, handle, Code::CONTENT, |b| b.payload(&big).map(drop))
        .unwrap();
    let ack = drain(&mut s, now).sent[0].1.clone();
    let Some(Incoming::Response {
        handle, message, ..
    }) = c.handle_datagram(now, 5, &ack)
    else {
        panic!("the answer");
    };
    assert_eq!((handle, message.payload().len()), (h, 200));
    let out = drain(&mut c, t(20_000));
    assert_eq!(out.events, vec![Event::GroupEnded(h)]);
    assert_eq!(c.exchanges_in_flight(), 0);
}

/// With no record free for a member's follow-up, its first block is delivered as it
/// came and the request reports the member before it ends: nothing is lost silently.
#[test]
fn member_without_room_for_its_follow_up_is_reported_before_the_end() {
    type Tiny = Endpoint<u8, 2, 4, 256, 16, 1024>;
    let mut c = Tiny::new(Config {
        seed: 10,
        immediate_reserve: 0,
        ..Config::default()
    })
    .unwrap();
    let (h, request) = group_get(&mut c, "/big");
    let token = parse(&request).token().to_vec();
    let first = |mid: u16| {
        msg(Type::Non, Code::CONTENT, mid, &token, |b| {
            b.block2(coap_proto::wire::Block::new(0, true, 2).unwrap())
                .unwrap();
            b.payload(&[7; 64]).unwrap();
        })
    };
    // Member 1 takes the second and last record for its follow-up; member 2 finds none.
    for (from, mid) in [(1u8, 0x100), (2, 0x200)] {
        let datagram = first(mid);
        let Some(Incoming::Response { block: Some(b), .. }) =
            c.handle_datagram(t(10), from, &datagram)
        else {
            panic!("member {from}'s first block is delivered");
        };
        assert!(!b.last);
    }
    assert_eq!(c.exchanges_in_flight(), 2);
    let out = drain(&mut c, t(10));
    assert_eq!(out.sent.len(), 1, "one follow-up, to member 1");
    assert_eq!(out.sent[0].0, 1);
    // Member 1 never answers: its follow-up times out; then the window is long closed.
    let mut events = Vec::new();
    let mut now = t(10);
    for _ in 0..100 {
        let out = drain(&mut c, now);
        events.extend(out.events);
        match out.timeout {
            Some(at) => now = at,
            None => break,
        }
    }
    assert_eq!(
        events,
        vec![
            Event::MemberFailed(h),
            Event::MemberFailed(h),
            Event::GroupEnded(h)
        ]
    );
    assert_eq!(c.exchanges_in_flight(), 0);
}
