//! Endpoints in one role (`handle_client_datagram`, `handle_server_datagram`): each does
//! its role's work exactly as `handle_datagram` does, and refuses what only the other
//! role could process as RFC 7252 says (RST for a CON, nothing for a NON).

mod common;

use coap_proto::wire::{Code, Type};
use coap_proto::{Event, Incoming, Output, RequestOptions, ResponseMode};
use common::{drain, endpoint, msg, parse, t};

#[test]
fn client_only_endpoint_completes_its_requests_and_refuses_requests() {
    let (mut c, mut s) = (endpoint(1), endpoint(2));
    let h = c
        .request(t(0), 2, Code::GET, &RequestOptions::default(), |b| {
            b.uri_path("/a").map(drop)
        })
        .unwrap();
    let request = drain(&mut c, t(0)).sent[0].1.clone();
    let Some(Incoming::Request { handle, .. }) = s.handle_server_datagram(t(1), 1, &request) else {
        panic!("served");
    };
    s.respond(t(1), handle, Code::CONTENT, |b| b.payload(b"x").map(drop))
        .unwrap();
    let ack = drain(&mut s, t(1)).sent[0].1.clone();
    let Some(Incoming::Response {
        handle: got,
        message,
        ..
    }) = c.handle_client_datagram(t(2), 2, &ack)
    else {
        panic!("the response");
    };
    assert_eq!((got, message.payload()), (h, &b"x"[..]));
    // A request to the client-only endpoint: RST if CON, nothing if NON.
    let con = msg(Type::Con, Code::GET, 0x77, &[1], |_| {});
    assert!(c.handle_client_datagram(t(3), 9, &con).is_none());
    let out = drain(&mut c, t(3));
    assert_eq!(out.sent.len(), 1);
    assert_eq!((out.sent[0].0, parse(&out.sent[0].1).ty()), (9, Type::Rst));
    assert_eq!(parse(&out.sent[0].1).message_id(), 0x77);
    let non = msg(Type::Non, Code::POST, 0x78, &[1], |_| {});
    assert!(c.handle_client_datagram(t(4), 9, &non).is_none());
    assert!(drain(&mut c, t(4)).sent.is_empty());
    assert_eq!(c.exchanges_in_flight(), 0);
}

#[test]
fn server_only_endpoint_serves_gets_its_acks_and_refuses_responses() {
    let mut s = endpoint(3);
    // A separate CON response, acknowledged through the server-only entry point.
    let get = msg(Type::Con, Code::GET, 0x10, &[5], |b| {
        b.uri_path("/slow").unwrap();
    });
    let Some(Incoming::Request { handle, .. }) = s.handle_server_datagram(t(0), 1, &get) else {
        panic!("served");
    };
    s.respond_with(
        t(0),
        handle,
        ResponseMode::Confirmable,
        Code::CONTENT,
        |b| b.payload(b"late").map(drop),
    )
    .unwrap();
    let out = drain(&mut s, t(0));
    let response = out
        .sent
        .iter()
        .map(|(_, d)| parse(d))
        .find(|m| m.ty() == Type::Con)
        .expect("a CON response")
        .message_id();
    let ack = msg(Type::Ack, Code::EMPTY, response, &[], |_| {});
    assert!(s.handle_server_datagram(t(1), 1, &ack).is_none());
    assert_eq!(
        drain(&mut s, t(1)).events,
        vec![Event::ResponseAcknowledged(handle)]
    );
    // A response to the server-only endpoint: RST if CON, nothing if NON.
    let con = msg(Type::Con, Code::CONTENT, 0x20, &[1], |_| {});
    assert!(s.handle_server_datagram(t(2), 4, &con).is_none());
    let out = drain(&mut s, t(2));
    assert_eq!(out.sent.len(), 1);
    assert_eq!(
        (
            parse(&out.sent[0].1).ty(),
            parse(&out.sent[0].1).message_id()
        ),
        (Type::Rst, 0x20)
    );
    let non = msg(Type::Non, Code::CONTENT, 0x21, &[1], |_| {});
    assert!(s.handle_server_datagram(t(3), 4, &non).is_none());
    assert!(matches!(s.poll_output(t(3)), Output::Timeout(_)));
    assert_eq!(s.exchanges_in_flight(), 0);
}

/// A ping gets its RST, and malformed CONs theirs, whatever the role.
#[test]
fn both_single_role_entry_points_answer_pings_and_garbage() {
    let mut e = endpoint(4);
    let ping = msg(Type::Con, Code::EMPTY, 0x30, &[], |_| {});
    let garbage = [0x40, 0x01, 0x00, 0x31, 0xff];
    for role in 0..2 {
        for d in [&ping[..], &garbage] {
            let got = if role == 0 {
                e.handle_client_datagram(t(0), 1, d)
            } else {
                e.handle_server_datagram(t(0), 1, d)
            };
            assert!(got.is_none());
            let out = drain(&mut e, t(0));
            assert_eq!(out.sent.len(), 1, "role {role}");
            assert_eq!(parse(&out.sent[0].1).ty(), Type::Rst);
        }
    }
}
