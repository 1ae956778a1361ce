//! Scripted single-endpoint tests: a message in at time T, the exact message out, the
//! exact instants (RFC 7252 §4, §5; RFC 7967; RFC 8974 §2.2).

mod common;

use std::time::Duration;

use coap_proto::wire::{Code, NoResponse, OptionNumber, Type};
use coap_proto::{
    Config, Endpoint, Error, Event, Incoming, Instant, RequestOptions, ResponseMode,
    TransmissionParams,
};
use common::*;

fn get(ep: &mut Ep, now: Instant, opts: &RequestOptions<'_>) -> coap_proto::RequestHandle {
    ep.request(now, SERVER, Code::GET, opts, |b| {
        b.uri_path("/x")?;
        Ok(())
    })
    .unwrap()
}

fn request_at_server(server: &mut Ep, now: Instant, bytes: &[u8]) -> coap_proto::IncomingHandle {
    match server.handle_datagram(now, CLIENT, bytes) {
        Some(Incoming::Request { handle, message }) => {
            assert!(message.uri_path().matches("/x"));
            handle
        }
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn con_request_gets_piggybacked_response() {
    let (mut client, mut server) = (endpoint(1), endpoint(2));
    let h = get(&mut client, t(0), &RequestOptions::default());
    let out = drain(&mut client, t(0));
    assert_eq!(out.sent.len(), 1);
    let (to, req) = &out.sent[0];
    assert_eq!(*to, SERVER);
    let r = parse(req);
    assert_eq!(
        (r.ty(), r.code(), r.token().len()),
        (Type::Con, Code::GET, 4)
    );

    let ih = request_at_server(&mut server, t(10), req);
    server
        .respond(t(10), ih, Code::CONTENT, |b| {
            b.payload(b"22.5")?;
            Ok(())
        })
        .unwrap();
    let out = drain(&mut server, t(10));
    assert_eq!(out.sent.len(), 1, "one piggybacked ACK, no empty ACK");
    let resp = parse(&out.sent[0].1);
    assert_eq!((resp.ty(), resp.code()), (Type::Ack, Code::CONTENT));
    assert_eq!(resp.message_id(), r.message_id());
    assert_eq!(resp.token(), r.token());
    assert!(out.events.is_empty());

    match client.handle_datagram(t(20), SERVER, &out.sent[0].1) {
        Some(Incoming::Response {
            handle, message, ..
        }) => {
            assert_eq!(handle, h);
            assert_eq!(message.payload(), b"22.5");
        }
        other => panic!("expected the response, got {other:?}"),
    }
    let out = drain(&mut client, t(20));
    assert!(out.sent.is_empty() && out.events.is_empty());
    assert_eq!(out.timeout, None);
    assert_eq!(client.exchanges_in_flight(), 0);
}

#[test]
fn con_retransmits_with_backoff_and_gives_up_at_max_transmit_wait() {
    let params = exact_params();
    let mut client = Ep::new(Config {
        params,
        ..config(7)
    })
    .unwrap();
    let h = get(&mut client, t(0), &RequestOptions::default());
    let mut sent_at = vec![];
    let mut now = t(0);
    let mut events = vec![];
    for _ in 0..10 {
        let out = drain(&mut client, now);
        sent_at.extend(out.sent.iter().map(|_| now));
        events.extend(out.events);
        match out.timeout {
            Some(next) => now = next,
            None => break,
        }
    }
    let secs: Vec<u64> = sent_at.iter().map(|t| t.as_millis()).collect();
    // §4.2 with ACK_TIMEOUT 2 s, factor 1.0: timeouts 2, 4, 8, 16 s, then 32 s to give up.
    assert_eq!(secs, [0, 2_000, 6_000, 14_000, 30_000]);
    assert_eq!(events, [Event::TimedOut(h)]);
    assert_eq!(now - t(0), params.max_transmit_wait());
    assert_eq!(client.stats().retransmissions, 4);
}

#[test]
fn initial_timeout_is_randomized_within_ack_random_factor() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let mut client = endpoint(seed);
        get(&mut client, t(0), &RequestOptions::default());
        let first = drain(&mut client, t(0)).timeout.unwrap();
        assert!(first >= t(2_000) && first <= t(3_000), "{first}");
        seen.insert(first);
    }
    assert!(seen.len() > 40, "timeouts should vary with the seed");
}

#[test]
fn same_seed_same_bytes_and_instants() {
    let run = || {
        let mut c = endpoint(99);
        get(&mut c, t(0), &RequestOptions::default());
        let out = drain(&mut c, t(0));
        (out.sent, out.timeout)
    };
    assert_eq!(run(), run());
}

#[test]
fn empty_ack_then_separate_con_response() {
    let (mut client, mut server) = (endpoint(1), endpoint(2));
    let h = get(&mut client, t(0), &RequestOptions::default());
    let req = drain(&mut client, t(0)).sent.remove(0).1;
    let ih = request_at_server(&mut server, t(5), &req);
    // Not answered in the same step: an empty ACK goes out.
    let out = drain(&mut server, t(5));
    assert_eq!(out.sent.len(), 1);
    let ack = parse(&out.sent[0].1);
    assert_eq!(
        (ack.ty(), ack.code(), ack.message_id()),
        (Type::Ack, Code::EMPTY, parse(&req).message_id())
    );
    assert!(
        client
            .handle_datagram(t(6), SERVER, &out.sent[0].1)
            .is_none()
    );
    // The client stops retransmitting and waits for the separate response.
    let waiting = drain(&mut client, t(6));
    assert!(waiting.sent.is_empty());
    assert_eq!(
        waiting.timeout,
        Some(t(6) + TransmissionParams::RFC7252.exchange_lifetime())
    );

    server
        .respond(t(1000), ih, Code::CONTENT, |b| {
            b.payload(b"later")?;
            Ok(())
        })
        .unwrap();
    let out = drain(&mut server, t(1000));
    let sep = parse(&out.sent[0].1);
    assert_eq!((sep.ty(), sep.code()), (Type::Con, Code::CONTENT));
    assert_eq!(sep.token(), parse(&req).token());
    assert_ne!(sep.message_id(), parse(&req).message_id());

    match client.handle_datagram(t(1001), SERVER, &out.sent[0].1) {
        Some(Incoming::Response {
            handle, message, ..
        }) => {
            assert_eq!(handle, h);
            assert_eq!(message.payload(), b"later");
        }
        other => panic!("{other:?}"),
    }
    let out_c = drain(&mut client, t(1001));
    let ack = parse(&out_c.sent[0].1);
    assert_eq!(
        (ack.ty(), ack.code(), ack.message_id()),
        (Type::Ack, Code::EMPTY, sep.message_id())
    );
    assert!(
        server
            .handle_datagram(t(1002), CLIENT, &out_c.sent[0].1)
            .is_none()
    );
    let out_s = drain(&mut server, t(1002));
    assert_eq!(out_s.events, [Event::ResponseAcknowledged(ih)]);
    assert_eq!(out_s.timeout, None);
}

#[test]
fn separate_non_response_to_con_request() {
    let (mut client, mut server) = (endpoint(1), endpoint(2));
    get(&mut client, t(0), &RequestOptions::default());
    let req = drain(&mut client, t(0)).sent.remove(0).1;
    let ih = request_at_server(&mut server, t(1), &req);
    server
        .respond_with(
            t(1),
            ih,
            ResponseMode::NonConfirmable,
            Code::CONTENT,
            |_| Ok(()),
        )
        .unwrap();
    let out = drain(&mut server, t(1));
    let kinds: Vec<(Type, Code)> = out
        .sent
        .iter()
        .map(|(_, b)| (parse(b).ty(), parse(b).code()))
        .collect();
    assert_eq!(
        kinds,
        [(Type::Ack, Code::EMPTY), (Type::Non, Code::CONTENT)]
    );
    assert_eq!(server.exchanges_in_flight(), 0);
    assert!(
        client
            .handle_datagram(t(2), SERVER, &out.sent[0].1)
            .is_none()
    );
    assert!(matches!(
        client.handle_datagram(t(2), SERVER, &out.sent[1].1),
        Some(Incoming::Response { .. })
    ));
    assert!(
        drain(&mut client, t(2)).sent.is_empty(),
        "a NON response is not acknowledged"
    );
}

#[test]
fn non_request_gets_non_response_and_times_out_without_one() {
    let (mut client, mut server) = (endpoint(1), endpoint(2));
    let opts = RequestOptions {
        non_confirmable: true,
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    get(&mut client, t(0), &opts);
    let out = drain(&mut client, t(0));
    assert_eq!(
        out.timeout,
        Some(t(10_000)),
        "NON waits exactly the given timeout"
    );
    let req = &out.sent[0].1;
    assert_eq!(parse(req).ty(), Type::Non);
    let ih = request_at_server(&mut server, t(1), req);
    server.respond(t(1), ih, Code::CONTENT, |_| Ok(())).unwrap();
    let resp = drain(&mut server, t(1)).sent.remove(0).1;
    assert_eq!(parse(&resp).ty(), Type::Non);
    assert!(matches!(
        client.handle_datagram(t(2), SERVER, &resp),
        Some(Incoming::Response { .. })
    ));

    let h2 = get(&mut client, t(3), &opts);
    drain(&mut client, t(3));
    let out = drain(&mut client, t(13_000));
    assert_eq!(out.events, [Event::TimedOut(h2)]);
    assert!(out.sent.is_empty(), "NON is never retransmitted");
}

#[test]
fn lost_piggybacked_ack_is_replayed_for_the_retransmitted_request() {
    let (mut client, mut server) = (endpoint(1), endpoint(2));
    let h = get(&mut client, t(0), &RequestOptions::default());
    let out = drain(&mut client, t(0));
    let req = out.sent[0].1.clone();
    let ih = request_at_server(&mut server, t(1), &req);
    server
        .respond(t(1), ih, Code::CONTENT, |b| {
            b.payload(b"once")?;
            Ok(())
        })
        .unwrap();
    let first = drain(&mut server, t(1)).sent.remove(0).1; // lost
    // The client retransmits the same bytes at its timeout.
    let retx = drain(&mut client, out.timeout.unwrap()).sent.remove(0).1;
    assert_eq!(retx, req);
    assert!(
        server
            .handle_datagram(out.timeout.unwrap(), CLIENT, &retx)
            .is_none(),
        "handler must not run twice"
    );
    let replay = drain(&mut server, out.timeout.unwrap()).sent.remove(0).1;
    assert_eq!(replay, first, "the same reply, byte for byte");
    assert_eq!(server.stats().duplicates, 1);
    assert!(
        matches!(client.handle_datagram(out.timeout.unwrap(), SERVER, &replay),
        Some(Incoming::Response { handle, .. }) if handle == h)
    );
}

#[test]
fn duplicate_con_request_while_deferred_gets_empty_ack_not_a_second_delivery() {
    let mut server = Ep::new(Config {
        empty_ack_delay: Duration::from_millis(500),
        ..config(2)
    })
    .unwrap();
    let req = msg(Type::Con, Code::GET, 0x77, &[1, 2], |b| {
        b.uri_path("x").unwrap();
    });
    request_at_server(&mut server, t(0), &req);
    let out = drain(&mut server, t(0));
    assert!(out.sent.is_empty(), "the empty ACK waits for the delay");
    assert_eq!(out.timeout, Some(t(500)));
    assert!(server.handle_datagram(t(100), CLIENT, &req).is_none());
    let out = drain(&mut server, t(100));
    let ack = parse(&out.sent[0].1);
    assert_eq!(
        (ack.ty(), ack.code(), ack.message_id()),
        (Type::Ack, Code::EMPTY, 0x77)
    );
    assert!(server.handle_datagram(t(200), CLIENT, &req).is_none());
    assert_eq!(
        drain(&mut server, t(200)).sent.len(),
        1,
        "acknowledged again"
    );
}

#[test]
fn duplicate_non_request_is_ignored() {
    let mut server = endpoint(2);
    let req = msg(Type::Non, Code::GET, 9, &[1], |b| {
        b.uri_path("x").unwrap();
    });
    request_at_server(&mut server, t(0), &req);
    assert!(server.handle_datagram(t(50), CLIENT, &req).is_none());
    assert!(drain(&mut server, t(50)).sent.is_empty());
    // After NON_LIFETIME the same MID is a new message.
    let later = t(0) + TransmissionParams::RFC7252.non_lifetime() + Duration::from_secs(1);
    assert!(server.handle_datagram(later, CLIENT, &req).is_some());
}

#[test]
fn duplicate_con_separate_response_is_acked_again_but_not_delivered_twice() {
    let mut client = endpoint(1);
    let h = get(&mut client, t(0), &RequestOptions::default());
    let req = parse(&drain(&mut client, t(0)).sent[0].1).token().to_vec();
    let sep = msg(Type::Con, Code::CONTENT, 0x500, &req, |b| {
        b.payload(b"v").unwrap();
    });
    assert!(
        matches!(client.handle_datagram(t(1), SERVER, &sep), Some(Incoming::Response { handle, .. }) if handle == h)
    );
    let a1 = drain(&mut client, t(1)).sent;
    assert!(client.handle_datagram(t(2), SERVER, &sep).is_none());
    let a2 = drain(&mut client, t(2)).sent;
    assert_eq!(a1, a2);
    assert_eq!(parse(&a2[0].1).message_id(), 0x500);
}

#[test]
fn response_with_unknown_token_is_reset_if_con_and_ignored_if_non() {
    let mut client = endpoint(1);
    get(&mut client, t(0), &RequestOptions::default());
    drain(&mut client, t(0));
    let stray = msg(Type::Con, Code::CONTENT, 0x42, &[9, 9, 9, 9], |_| {});
    assert!(client.handle_datagram(t(1), SERVER, &stray).is_none());
    let out = drain(&mut client, t(1));
    let rst = parse(&out.sent[0].1);
    assert_eq!(
        (rst.ty(), rst.code(), rst.message_id()),
        (Type::Rst, Code::EMPTY, 0x42)
    );
    let stray_non = msg(Type::Non, Code::CONTENT, 0x43, &[9, 9, 9, 9], |_| {});
    assert!(client.handle_datagram(t(2), SERVER, &stray_non).is_none());
    assert!(drain(&mut client, t(2)).sent.is_empty());
}

#[test]
fn response_from_another_peer_does_not_match() {
    let mut client = endpoint(1);
    get(&mut client, t(0), &RequestOptions::default());
    let token = parse(&drain(&mut client, t(0)).sent[0].1).token().to_vec();
    let resp = msg(Type::Non, Code::CONTENT, 0x43, &token, |_| {});
    assert!(
        client.handle_datagram(t(1), 77, &resp).is_none(),
        "token matches, peer does not"
    );
    assert!(client.handle_datagram(t(1), SERVER, &resp).is_some());
}

#[test]
fn ping_is_answered_with_rst_and_gives_pong() {
    let (mut a, mut b) = (endpoint(1), endpoint(2));
    let h = a.ping(t(0), SERVER).unwrap();
    let ping = drain(&mut a, t(0)).sent.remove(0).1;
    assert_eq!(ping.len(), 4);
    assert_eq!(parse(&ping).ty(), Type::Con);
    assert!(b.handle_datagram(t(1), CLIENT, &ping).is_none());
    let rst = drain(&mut b, t(1)).sent.remove(0).1;
    assert_eq!(rst, [0x70, 0, ping[2], ping[3]]);
    assert!(a.handle_datagram(t(2), SERVER, &rst).is_none());
    assert_eq!(drain(&mut a, t(2)).events, [Event::Pong(h)]);
}

#[test]
fn reset_request_ends_with_reset_event() {
    let mut client = endpoint(1);
    let h = get(&mut client, t(0), &RequestOptions::default());
    let req = drain(&mut client, t(0)).sent.remove(0).1;
    let rst = msg(
        Type::Rst,
        Code::EMPTY,
        parse(&req).message_id(),
        &[],
        |_| {},
    );
    client.handle_datagram(t(1), SERVER, &rst);
    let out = drain(&mut client, t(1));
    assert_eq!(out.events, [Event::Reset(h)]);
    assert_eq!(out.timeout, None);
}

#[test]
fn cancel_stops_retransmission_and_rejects_a_late_response() {
    let mut client = endpoint(1);
    let h = get(&mut client, t(0), &RequestOptions::default());
    let req = drain(&mut client, t(0)).sent.remove(0).1;
    client.cancel(t(1), h).unwrap();
    assert_eq!(client.cancel(t(1), h), Err(Error::UnknownHandle));
    let out = drain(&mut client, t(100_000));
    assert!(out.sent.is_empty() && out.events.is_empty(), "{out:?}");
    let late = msg(Type::Con, Code::CONTENT, 0x99, parse(&req).token(), |_| {});
    assert!(client.handle_datagram(t(100_001), SERVER, &late).is_none());
    assert_eq!(
        parse(&drain(&mut client, t(100_001)).sent[0].1).ty(),
        Type::Rst
    );
}

#[test]
fn nstart_queues_the_second_request_until_the_first_is_done() {
    let mut client = endpoint(1);
    let h1 = get(&mut client, t(0), &RequestOptions::default());
    let _h2 = get(&mut client, t(0), &RequestOptions::default());
    let out = drain(&mut client, t(0));
    assert_eq!(
        out.sent.len(),
        1,
        "NSTART 1: one outstanding interaction per peer"
    );
    let other_peer = client
        .request(t(0), 3, Code::GET, &RequestOptions::default(), |_| Ok(()))
        .unwrap();
    assert_eq!(
        drain(&mut client, t(0)).sent.len(),
        1,
        "another peer is not held back"
    );
    let _ = other_peer;
    // Finish the first one: the queued request goes out.
    let req1 = parse(&out.sent[0].1);
    let resp = msg(
        Type::Ack,
        Code::CONTENT,
        req1.message_id(),
        req1.token(),
        |_| {},
    );
    assert!(
        matches!(client.handle_datagram(t(5), SERVER, &resp), Some(Incoming::Response { handle, .. }) if handle == h1)
    );
    let out = drain(&mut client, t(5));
    assert_eq!(out.sent.len(), 1);
    assert_eq!(out.sent[0].0, SERVER);
    assert_ne!(parse(&out.sent[0].1).message_id(), req1.message_id());
}

#[test]
fn full_table_answers_503_with_the_time_until_a_slot_frees() {
    // Eight requests arrive before the application drains anything: every slot is
    // taken. Six are under the deferral quota (8 slots, 2 reserved); the two over it
    // will be refused when their handling call ends, which is when a slot frees.
    let mut server = endpoint(2);
    for mid in 0..8u16 {
        let req = msg(Type::Con, Code::GET, mid, &[mid as u8], |b| {
            b.uri_path("x").unwrap();
        });
        let peer = 10 + mid as u8;
        assert!(server.handle_datagram(t(0), peer, &req).is_some());
    }
    let req = msg(Type::Con, Code::GET, 100, &[7], |b| {
        b.uri_path("x").unwrap();
    });
    assert!(server.handle_datagram(t(0), CLIENT, &req).is_none());
    let out = drain(&mut server, t(0));
    let refusal = out
        .sent
        .iter()
        .find(|(to, _)| *to == CLIENT)
        .expect("the ninth request is answered");
    let r = parse(&refusal.1);
    assert_eq!(
        (r.ty(), r.code(), r.message_id()),
        (Type::Ack, Code::SERVICE_UNAVAILABLE, 100)
    );
    assert_eq!(r.max_age(), Ok(Some(1)), "two slots free at once");
    assert_eq!(r.token(), &[7]);
    // A duplicate gets the same answer, replayed.
    server.handle_datagram(t(0), CLIENT, &req);
    assert_eq!(drain(&mut server, t(0)).sent[0].1, refusal.1);
    // The two over the quota were answered 5.03 by the endpoint, and said so.
    let refused: Vec<_> = out
        .events
        .iter()
        .filter(|e| matches!(e, Event::RequestRefused(_)))
        .collect();
    assert_eq!(refused.len(), 2);
    assert_eq!(server.stats().overloaded, 3);
    // The client side refuses a new request with a typed error.
    let mut client = endpoint(1);
    for _ in 0..8 {
        get(&mut client, t(0), &RequestOptions::default());
    }
    assert_eq!(
        client.request(t(0), SERVER, Code::GET, &RequestOptions::default(), |_| Ok(
            ()
        )),
        Err(Error::TableFull)
    );
}

#[test]
fn unrecognized_critical_option_gets_402_for_con_and_rst_for_non() {
    let mut server = endpoint(2);
    let con = msg(Type::Con, Code::GET, 1, &[1], |b| {
        b.option(OptionNumber(9), b"oscore").unwrap(); // OSCORE: critical, not supported
    });
    assert!(server.handle_datagram(t(0), CLIENT, &con).is_none());
    let out = drain(&mut server, t(0));
    let r = parse(&out.sent[0].1);
    assert_eq!(
        (r.ty(), r.code(), r.message_id()),
        (Type::Ack, Code::BAD_OPTION, 1)
    );
    let non = msg(Type::Non, Code::GET, 2, &[1], |b| {
        b.option(OptionNumber(2049), b"").unwrap();
    });
    assert!(server.handle_datagram(t(1), CLIENT, &non).is_none());
    let out = drain(&mut server, t(1));
    let r = parse(&out.sent[0].1);
    assert_eq!((r.ty(), r.message_id()), (Type::Rst, 2));
    // Elective unknown options are ignored; a critical one the app declared is fine.
    let mut server = Ep::new(Config {
        known_critical_options: &[2049],
        ..config(2)
    })
    .unwrap();
    let ok = msg(Type::Con, Code::GET, 3, &[1], |b| {
        b.option(OptionNumber(2048), b"e").unwrap();
        b.option(OptionNumber(2049), b"c").unwrap();
    });
    assert!(server.handle_datagram(t(0), CLIENT, &ok).is_some());
}

#[test]
fn known_critical_option_with_bad_length_gets_402() {
    let mut server = endpoint(2);
    let con = msg(Type::Con, Code::GET, 1, &[1], |b| {
        b.option(OptionNumber::URI_PORT, &[1, 2, 3]).unwrap(); // 0–2 bytes allowed
    });
    assert!(server.handle_datagram(t(0), CLIENT, &con).is_none());
    assert_eq!(
        parse(&drain(&mut server, t(0)).sent[0].1).code(),
        Code::BAD_OPTION
    );
}

#[test]
fn unassigned_method_gets_405() {
    let mut server = endpoint(2);
    let req = msg(Type::Con, Code::new(0, 9).unwrap(), 5, &[], |_| {});
    assert!(server.handle_datagram(t(0), CLIENT, &req).is_none());
    assert_eq!(
        parse(&drain(&mut server, t(0)).sent[0].1).code(),
        Code::METHOD_NOT_ALLOWED
    );
}

#[test]
fn malformed_con_is_reset_and_malformed_non_and_bad_version_are_ignored() {
    let mut ep = endpoint(2);
    // CON with option nibble 15: format error.
    ep.handle_datagram(t(0), CLIENT, &[0x40, 0x01, 0x12, 0x34, 0xf1]);
    let out = drain(&mut ep, t(0));
    assert_eq!(out.sent[0].1, [0x70, 0, 0x12, 0x34]);
    // CON with a reserved code class: rejected too.
    ep.handle_datagram(t(0), CLIENT, &[0x40, 0xe1, 0x00, 0x01]);
    assert_eq!(drain(&mut ep, t(0)).sent[0].1, [0x70, 0, 0, 1]);
    // NON malformed, version 2, an Empty NON: silently ignored.
    ep.handle_datagram(t(0), CLIENT, &[0x50, 0x01, 0x00, 0x02, 0xf1]);
    ep.handle_datagram(t(0), CLIENT, &[0x80, 0x01, 0x00, 0x03]);
    ep.handle_datagram(t(0), CLIENT, &[0x50, 0x00, 0x00, 0x04]);
    assert!(drain(&mut ep, t(0)).sent.is_empty());
    assert_eq!(ep.stats().malformed, 4);
}

#[test]
fn unexpected_ack_and_rst_are_ignored_never_answered() {
    let mut ep = endpoint(2);
    ep.handle_datagram(t(0), CLIENT, &[0x60, 0x00, 0x00, 0x05]);
    ep.handle_datagram(t(0), CLIENT, &[0x70, 0x00, 0x00, 0x06]);
    ep.handle_datagram(
        t(0),
        CLIENT,
        &msg(Type::Ack, Code::CONTENT, 7, &[1], |_| {}),
    );
    ep.handle_datagram(t(0), CLIENT, &msg(Type::Ack, Code::GET, 8, &[1], |_| {}));
    ep.handle_datagram(t(0), CLIENT, &msg(Type::Rst, Code::CONTENT, 9, &[], |_| {}));
    assert!(drain(&mut ep, t(0)).sent.is_empty());
    assert!(ep.stats().unmatched >= 2);
}

#[test]
fn no_response_suppresses_the_named_classes() {
    let mut server = endpoint(2);
    let con = msg(Type::Con, Code::POST, 1, &[1], |b| {
        b.no_response(NoResponse(NoResponse::SUPPRESS_2XX)).unwrap();
    });
    let h = match server.handle_datagram(t(0), CLIENT, &con) {
        Some(Incoming::Request { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    server.respond(t(0), h, Code::CHANGED, |_| Ok(())).unwrap();
    let out = drain(&mut server, t(0));
    let ack = parse(&out.sent[0].1);
    assert_eq!(
        (ack.ty(), ack.code()),
        (Type::Ack, Code::EMPTY),
        "CON still acknowledged"
    );
    assert_eq!(out.sent.len(), 1);
    let non = msg(Type::Non, Code::POST, 2, &[1], |b| {
        b.no_response(NoResponse(NoResponse::SUPPRESS_2XX)).unwrap();
    });
    let h = match server.handle_datagram(t(1), CLIENT, &non) {
        Some(Incoming::Request { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    server.respond(t(1), h, Code::CHANGED, |_| Ok(())).unwrap();
    assert!(drain(&mut server, t(1)).sent.is_empty());
    // A 4.xx is not suppressed by "not interested in 2.xx".
    let non = msg(Type::Non, Code::POST, 3, &[1], |b| {
        b.no_response(NoResponse(NoResponse::SUPPRESS_2XX)).unwrap();
    });
    let h = match server.handle_datagram(t(2), CLIENT, &non) {
        Some(Incoming::Request { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    server
        .respond(t(2), h, Code::NOT_FOUND, |_| Ok(()))
        .unwrap();
    assert_eq!(drain(&mut server, t(2)).sent.len(), 1);
}

#[test]
fn token_longer_than_accepted_is_a_format_error() {
    let mut server = Ep::new(Config {
        max_token_len: 4,
        ..config(2)
    })
    .unwrap();
    let req = msg(Type::Con, Code::GET, 0x10, &[1, 2, 3, 4, 5], |_| {});
    assert!(server.handle_datagram(t(0), CLIENT, &req).is_none());
    assert_eq!(parse(&drain(&mut server, t(0)).sent[0].1).ty(), Type::Rst);
    let req = msg(Type::Con, Code::GET, 0x11, &[0; 13], |_| {}); // RFC 8974 length
    assert!(server.handle_datagram(t(0), CLIENT, &req).is_none());
    assert_eq!(parse(&drain(&mut server, t(0)).sent[0].1).ty(), Type::Rst);
}

#[test]
fn unanswered_request_expires_with_an_event() {
    let mut server = Ep::new(Config {
        deferred_response_timeout: Some(Duration::from_secs(30)),
        ..config(2)
    })
    .unwrap();
    let req = msg(Type::Con, Code::GET, 1, &[1], |_| {});
    let h = match server.handle_datagram(t(0), CLIENT, &req) {
        Some(Incoming::Request { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    let out = drain(&mut server, t(0));
    assert_eq!(out.sent.len(), 1);
    assert_eq!(out.timeout, Some(t(30_000)));
    assert_eq!(
        drain(&mut server, t(30_000)).events,
        [Event::RequestExpired(h)]
    );
    assert_eq!(
        server.respond(t(30_001), h, Code::CONTENT, |_| Ok(())),
        Err(Error::UnknownHandle)
    );
}

#[test]
fn separate_con_response_is_retransmitted_and_reports_timeout() {
    let mut server = Ep::new(Config {
        params: exact_params(),
        ..config(2)
    })
    .unwrap();
    let req = msg(Type::Con, Code::GET, 1, &[1], |_| {});
    let h = match server.handle_datagram(t(0), CLIENT, &req) {
        Some(Incoming::Request { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    drain(&mut server, t(0));
    server
        .respond(t(1000), h, Code::CONTENT, |_| Ok(()))
        .unwrap();
    let mut now = t(1000);
    let mut sent = 0;
    let mut events = vec![];
    for _ in 0..10 {
        let out = drain(&mut server, now);
        sent += out.sent.len();
        events.extend(out.events);
        match out.timeout {
            Some(next) => now = next,
            None => break,
        }
    }
    assert_eq!(sent, 5);
    assert_eq!(events, [Event::ResponseTimedOut(h)]);
    assert_eq!(now, t(1000 + 62_000));
}

#[test]
fn commands_with_wrong_codes_or_stale_handles_are_typed_errors() {
    let mut ep = endpoint(1);
    assert_eq!(
        ep.request(
            t(0),
            SERVER,
            Code::CONTENT,
            &RequestOptions::default(),
            |_| Ok(())
        ),
        Err(Error::WrongCode(Code::CONTENT))
    );
    let long = RequestOptions {
        token: Some(&[0; 9]),
        ..Default::default()
    };
    assert_eq!(
        ep.request(t(0), SERVER, Code::GET, &long, |_| Ok(())),
        Err(Error::TokenTooLong)
    );
    let bad = Config {
        params: TransmissionParams {
            nstart: 0,
            ..TransmissionParams::RFC7252
        },
        ..Config::default()
    };
    assert!(matches!(Endpoint::<u8>::new(bad), Err(Error::Params(_))));
}

#[test]
fn time_going_backwards_is_clamped() {
    let mut client = endpoint(1);
    get(&mut client, t(10_000), &RequestOptions::default());
    let first = drain(&mut client, t(10_000)).timeout.unwrap();
    // An earlier `now` acts as the latest one seen.
    let out = drain(&mut client, t(0));
    assert_eq!(out.timeout, Some(first));
    assert!(out.sent.is_empty());
}

#[test]
#[cfg(target_pointer_width = "64")]
fn default_endpoint_size_is_as_documented() {
    // The crate docs state these figures; keep them honest.
    use coap_proto::SmallEndpoint;
    use std::mem::size_of;
    use std::net::SocketAddr;
    assert_eq!(size_of::<coap_proto::Endpoint>(), 94_128);
    assert_eq!(size_of::<SmallEndpoint<u8>>(), 4_440);
    assert_eq!(size_of::<SmallEndpoint<SocketAddr>>(), 5_672);
    // One verified peer (RFC 9175 §2.4): the peer and a 32-bit timestamp.
    let verified = |small: usize, large: usize| (large - small) / 64;
    assert_eq!(
        verified(
            size_of::<Endpoint<SocketAddr, 64, 16, 1152, 128, 8192, 16, 16>>(),
            size_of::<Endpoint<SocketAddr, 64, 16, 1152, 128, 8192, 16, 80>>()
        ),
        36
    );
    // One observation (RFC 7641): a record of its own, no buffer while idle.
    let observer = |small: usize, large: usize| (large - small) / 64;
    assert_eq!(
        observer(
            size_of::<Endpoint<SocketAddr, 64, 16, 1152, 128, 8192, 16>>(),
            size_of::<Endpoint<SocketAddr, 64, 16, 1152, 128, 8192, 80>>()
        ),
        60
    );
    assert_eq!(
        observer(
            size_of::<Endpoint<u32, 64, 16, 1152, 128, 8192, 16>>(),
            size_of::<Endpoint<u32, 64, 16, 1152, 128, 8192, 80>>()
        ),
        32
    );
    assert_eq!(
        observer(
            size_of::<Endpoint<u8, 64, 16, 1152, 128, 8192, 16>>(),
            size_of::<Endpoint<u8, 64, 16, 1152, 128, 8192, 80>>()
        ),
        28
    );
    // One exchange record, indexes included, averaged over 64 more; a request waiting
    // for its answer costs this and nothing else. At most 64 bytes beyond the peer.
    let per = |a: usize, b: usize| (b - a) / 64;
    let record_socket = per(
        size_of::<Endpoint<SocketAddr, 64, 16, 1152, 128, 8192>>(),
        size_of::<Endpoint<SocketAddr, 128, 16, 1152, 128, 8192>>(),
    );
    let record_u32 = per(
        size_of::<Endpoint<u32, 64, 16, 1152, 128, 8192>>(),
        size_of::<Endpoint<u32, 128, 16, 1152, 128, 8192>>(),
    );
    let record_u8 = per(
        size_of::<Endpoint<u8, 64, 16, 1152, 128, 8192>>(),
        size_of::<Endpoint<u8, 128, 16, 1152, 128, 8192>>(),
    );
    assert_eq!((record_socket, record_u32, record_u8), (91, 67, 59));
    assert!(record_socket - size_of::<SocketAddr>() <= 64);
    assert!(record_u32 - 4 <= 64 && record_u8 - 1 <= 64);
    // A message buffer: its bytes, the client request's block-wise state and length.
    let buffer = per(
        size_of::<Endpoint<u8, 64, 16, 1152, 128, 8192>>(),
        size_of::<Endpoint<u8, 64, 80, 1152, 128, 8192>>(),
    );
    assert_eq!(buffer, 1152 + 110);
    // A dedup entry with its indexes.
    let entry = per(
        size_of::<Endpoint<SocketAddr, 64, 16, 1152, 128, 8192>>(),
        size_of::<Endpoint<SocketAddr, 64, 16, 1152, 192, 8192>>(),
    );
    assert_eq!(entry, 64);
}

#[test]
fn burst_of_separate_responses_loses_no_acks() {
    // Found by the exchange benchmark: 16 requests answered separately at once used to
    // overflow a small control queue, dropping half the empty ACKs and the client's
    // ACKs of the separate responses. Owed answers now live on their dedup entries.
    type Big = Endpoint<u8, 32, 34, 256, 64, 8192>;
    let config = |seed| Config {
        seed,
        params: TransmissionParams {
            nstart: 16,
            ..TransmissionParams::RFC7252
        },
        // One client may hold every slot here.
        peer_share_percent: 100,
        ..Config::default()
    };
    let (mut client, mut server) = (Big::new(config(1)).unwrap(), Big::new(config(2)).unwrap());
    let drain_all = |ep: &mut Big| {
        let mut sent = vec![];
        loop {
            match ep.poll_output(t(0)) {
                coap_proto::Output::Transmit(tx) => sent.push(tx.data.to_vec()),
                coap_proto::Output::Event(_) => {}
                coap_proto::Output::Timeout(_) => return sent,
            }
        }
    };
    for _ in 0..16 {
        client
            .request(t(0), SERVER, Code::GET, &RequestOptions::default(), |_| {
                Ok(())
            })
            .unwrap();
    }
    let mut handles = vec![];
    for req in drain_all(&mut client) {
        if let Some(Incoming::Request { handle, .. }) = server.handle_datagram(t(0), CLIENT, &req) {
            handles.push(handle);
        }
    }
    let acks = drain_all(&mut server);
    assert_eq!(acks.len(), 16, "every request acknowledged");
    for h in handles {
        server.respond(t(0), h, Code::CONTENT, |_| Ok(())).unwrap();
    }
    let mut responses = 0;
    for m in acks.iter().chain(drain_all(&mut server).iter()) {
        if let Some(Incoming::Response { .. }) = client.handle_datagram(t(0), SERVER, m) {
            responses += 1;
        }
    }
    assert_eq!(responses, 16);
    for ack in drain_all(&mut client) {
        server.handle_datagram(t(0), CLIENT, &ack);
    }
    drain_all(&mut server);
    assert_eq!(
        server.exchanges_in_flight(),
        0,
        "every separate response acknowledged"
    );
    assert_eq!(
        client.stats().control_dropped + server.stats().control_dropped,
        0
    );
}

#[test]
fn lost_empty_ack_and_lost_separate_response_both_recover() {
    let (mut client, mut server) = (endpoint(1), endpoint(2));
    let h = get(&mut client, t(0), &RequestOptions::default());
    let first = drain(&mut client, t(0));
    let req = first.sent[0].1.clone();
    let ih = request_at_server(&mut server, t(1), &req);
    let _lost_ack = drain(&mut server, t(1)).sent.remove(0).1;
    // The client retransmits; the server acknowledges again without a new delivery.
    let retx_at = first.timeout.unwrap();
    let retx = drain(&mut client, retx_at).sent.remove(0).1;
    assert!(server.handle_datagram(retx_at, CLIENT, &retx).is_none());
    let ack = drain(&mut server, retx_at).sent.remove(0).1;
    assert_eq!(parse(&ack).code(), Code::EMPTY);
    assert!(client.handle_datagram(retx_at, SERVER, &ack).is_none());
    // The separate response is lost once, then retransmitted and delivered.
    let answer_at = retx_at + Duration::from_secs(1);
    server
        .respond(answer_at, ih, Code::CONTENT, |b| {
            b.payload(b"finally")?;
            Ok(())
        })
        .unwrap();
    let sent = drain(&mut server, answer_at);
    let _lost_response = &sent.sent[0].1;
    let again = drain(&mut server, sent.timeout.unwrap()).sent.remove(0).1;
    assert_eq!(
        &again, _lost_response,
        "the same CON response, retransmitted"
    );
    match client.handle_datagram(sent.timeout.unwrap(), SERVER, &again) {
        Some(Incoming::Response {
            handle, message, ..
        }) => {
            assert_eq!(handle, h);
            assert_eq!(message.payload(), b"finally");
        }
        other => panic!("{other:?}"),
    }
    let ack = drain(&mut client, sent.timeout.unwrap()).sent.remove(0).1;
    server.handle_datagram(sent.timeout.unwrap(), CLIENT, &ack);
    assert_eq!(
        drain(&mut server, sent.timeout.unwrap()).events,
        [Event::ResponseAcknowledged(ih)]
    );
}

#[test]
fn full_dedup_cache_forgets_the_oldest_message() {
    // Documented behaviour: with every entry in use, a new message takes the oldest
    // entry; a late duplicate of that oldest message is then new again.
    type Tiny = Endpoint<u8, 8, 10, 256, 2, 512>;
    let mut server = Tiny::new(config(2)).unwrap();
    let non = |mid: u16| msg(Type::Non, Code::GET, mid, &[1], |_| {});
    for mid in [1, 2] {
        assert!(server.handle_datagram(t(0), CLIENT, &non(mid)).is_some());
    }
    assert!(
        server.handle_datagram(t(1), CLIENT, &non(2)).is_none(),
        "remembered"
    );
    assert!(server.handle_datagram(t(2), CLIENT, &non(3)).is_some());
    assert_eq!(server.dedup().evictions(), 1);
    assert!(
        server.handle_datagram(t(3), CLIENT, &non(1)).is_some(),
        "MID 1 was forgotten"
    );
}

#[test]
fn generated_tokens_never_repeat_one_in_use_queued_ones_included() {
    // One-byte tokens make clashes likely (about one seed in ten for 8 requests if
    // queued requests were not considered); NSTART 1 keeps most requests queued.
    for seed in 0..40 {
        let mut client = Ep::new(Config {
            token_len: 1,
            ..config(seed)
        })
        .unwrap();
        for _ in 0..8 {
            get(&mut client, t(0), &RequestOptions::default());
        }
        // Let them all go by answering each in turn; collect every token sent.
        let mut tokens = vec![];
        let mut now = t(0);
        for _ in 0..8 {
            let out = drain(&mut client, now);
            let req = parse(&out.sent[0].1);
            tokens.push(req.token().to_vec());
            let resp = msg(
                Type::Ack,
                Code::CONTENT,
                req.message_id(),
                req.token(),
                |_| {},
            );
            assert!(client.handle_datagram(now, SERVER, &resp).is_some());
            now = now + Duration::from_millis(1);
        }
        let mut unique = tokens.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            8,
            "seed {seed}: tokens of requests alive together must differ: {tokens:?}"
        );
    }
}

#[test]
fn queued_request_keeps_its_own_transmission_parameters() {
    let mut client = endpoint(1);
    let first = get(&mut client, t(0), &RequestOptions::default());
    let slow = TransmissionParams {
        ack_timeout: Duration::from_secs(10),
        ..exact_params()
    };
    let opts = RequestOptions {
        params: Some(slow),
        ..Default::default()
    };
    let _second = get(&mut client, t(0), &opts);
    let out = drain(&mut client, t(0));
    assert_eq!(out.sent.len(), 1, "the second waits for NSTART");
    let req = parse(&out.sent[0].1);
    let resp = msg(
        Type::Ack,
        Code::CONTENT,
        req.message_id(),
        req.token(),
        |_| {},
    );
    assert!(
        matches!(client.handle_datagram(t(100), SERVER, &resp), Some(Incoming::Response { handle, .. }) if handle == first)
    );
    let out = drain(&mut client, t(100));
    assert_eq!(out.sent.len(), 1, "now the second starts");
    // Its own ACK_TIMEOUT (10 s, factor 1.0), not the endpoint's 2–3 s.
    assert_eq!(out.timeout, Some(t(10_100)));
}

#[test]
fn duplicate_whose_idempotent_reply_made_room_is_processed_again() {
    // Found by the block fuzz target: a duplicate whose stored reply had been
    // overwritten got a zero-length datagram; later it got nothing, and its client
    // retransmitted into silence. Now an idempotent request whose reply had to make
    // room is processed again, as RFC 7252 §4.5 allows, and answered in full.
    type Small = Endpoint<u8, 8, 10, 128, 16, 132>;
    let mut server = Small::new(config(2)).unwrap();
    let req = |mid: u16| {
        msg(Type::Con, Code::GET, mid, &[mid as u8], |b| {
            b.uri_path("x").map(drop).unwrap()
        })
    };
    let answer = |s: &mut Small, mid: u16, at: Instant| {
        let Some(Incoming::Request { handle, .. }) = s.handle_datagram(at, CLIENT, &req(mid))
        else {
            panic!("request {mid} not delivered")
        };
        s.respond(at, handle, Code::CONTENT, |b| {
            b.payload(&[mid as u8; 80]).map(drop)
        })
        .unwrap();
        let mut sent = vec![];
        while let coap_proto::Output::Transmit(tx) = s.poll_output(at) {
            sent.push(tx.data.to_vec());
        }
        sent
    };
    let first = answer(&mut server, 1, t(0));
    answer(&mut server, 2, t(0)); // 2's reply needs the room of 1's in 128 bytes
    let again = answer(&mut server, 1, t(1));
    assert_eq!(again, first, "processed again, answered in full");
    // 1's new reply is stored now: its next duplicate is replayed, not delivered.
    assert!(server.handle_datagram(t(2), CLIENT, &req(1)).is_none());
    let replay = drain(&mut server, t(2));
    assert_eq!(replay.sent.len(), 1);
    assert_eq!(replay.sent[0].1, first[0]);
}

#[test]
fn upload_block_size_larger_than_the_buffer_holds_is_lowered_at_the_call() {
    // 256-byte buffers cannot carry 256-byte blocks beside header and options: the
    // upload starts with 128-byte blocks instead of failing at its first block.
    let mut c = coap_proto::SmallEndpoint::<u8>::new(config(3)).unwrap();
    let h = c
        .request_upload(
            t(0),
            SERVER,
            Code::PUT,
            &RequestOptions::default(),
            4,
            |b| b.uri_path("/firmware").map(drop),
        )
        .unwrap();
    let body = vec![0x5a; 1000];
    let mut sent = Vec::new();
    for _ in 0..4 {
        match c.poll_output(t(0)) {
            coap_proto::Output::Event(Event::BlockNeeded { handle, .. }) => {
                assert_eq!(handle, h);
                c.send_body_block(t(0), h, &body).unwrap();
            }
            coap_proto::Output::Transmit(tr) => sent.push(tr.data.to_vec()),
            _ => break,
        }
    }
    let first = parse(&sent[0]);
    let block1 = first.block1().unwrap().unwrap();
    assert_eq!((block1.num(), block1.size(), block1.more()), (0, 128, true));
    assert_eq!(first.payload().len(), 128);

    // With options that leave no room for even 16 bytes, the call itself fails.
    let long = "x".repeat(240);
    let e = c
        .request_upload(
            t(0),
            SERVER,
            Code::PUT,
            &RequestOptions::default(),
            4,
            |b| b.uri_path(&long).map(drop),
        )
        .unwrap_err();
    assert!(
        matches!(e, coap_proto::Error::Build(coap_proto::wire::BuildError::BufferTooSmall { needed }) if needed > 256),
        "{e}"
    );
    assert_eq!(c.exchanges_in_flight(), 1, "the failed call took nothing");
}

#[test]
fn request_released_at_its_empty_ack_frees_its_buffer_and_fails_a_block_wise_answer() {
    // 3 buffers, 2 kept for answers given at once: one request at a time holds one.
    type Small = coap_proto::Endpoint<u8, 8, 3, 512, 16, 2048>;
    let mut c = Small::new(config(4)).unwrap();
    let released = RequestOptions {
        release_on_ack: true,
        ..RequestOptions::default()
    };
    let get = |c: &mut Small, options: &RequestOptions<'_>| {
        c.request(t(0), SERVER, Code::GET, options, |b| {
            b.uri_path("/slow").map(drop)
        })
    };
    let first = get(&mut c, &released).unwrap();
    let sent = drain(&mut c, t(0)).sent;
    let req = parse(&sent[0].1);
    assert!(matches!(
        get(&mut c, &RequestOptions::default()),
        Err(coap_proto::Error::BuffersFull)
    ));
    // The server's empty ACK: the buffer is free, another request can start.
    let ack = msg(Type::Ack, Code::EMPTY, req.message_id(), &[], |_| {});
    assert!(c.handle_datagram(t(10), SERVER, &ack).is_none());
    drain(&mut c, t(10));
    let second = get(&mut c, &RequestOptions::default()).unwrap();
    drain(&mut c, t(10));
    // The separate response, whole: delivered as ever.
    let answer = msg(Type::Con, Code::CONTENT, 0x7001, req.token(), |b| {
        b.payload(b"late").unwrap();
    });
    let Some(Incoming::Response {
        handle,
        message,
        block,
    }) = c.handle_datagram(t(20), SERVER, &answer)
    else {
        panic!("delivered")
    };
    assert_eq!(
        (handle, message.payload(), block),
        (first, &b"late"[..], None)
    );
    drain(&mut c, t(20));

    // Released again, and this time the separate response is a first block: it is not
    // passed off as the body; the request fails with Released.
    let third = get(&mut c, &released);
    assert!(
        matches!(third, Err(coap_proto::Error::BuffersFull)),
        "second holds it"
    );
    let _ = second;
    let mut c = Small::new(config(5)).unwrap();
    let h = get(&mut c, &released).unwrap();
    let req = parse(&drain(&mut c, t(0)).sent[0].1).as_bytes().to_vec();
    let req = parse(&req);
    let ack = msg(Type::Ack, Code::EMPTY, req.message_id(), &[], |_| {});
    c.handle_datagram(t(10), SERVER, &ack);
    drain(&mut c, t(10));
    let first_block = msg(Type::Con, Code::CONTENT, 0x7002, req.token(), |b| {
        b.block2(coap_proto::wire::Block::new(0, true, 2).unwrap())
            .unwrap();
        b.payload(&[7; 64]).unwrap();
    });
    assert!(c.handle_datagram(t(20), SERVER, &first_block).is_none());
    let out = drain(&mut c, t(20));
    assert!(
        out.events.contains(&Event::BlockFailed(
            h,
            coap_proto::block::DownloadError::Released
        )),
        "{:?}",
        out.events
    );
    assert_eq!(c.exchanges_in_flight(), 0);
}
