//! Observe, server role (RFC 7641), scripted with exact bytes and instants: registration
//! and its replacement, every way an observation ends, sequence numbers across the
//! 24-bit wrap, the 24-hour CON rule, and a CON notification replaced in flight (and a
//! late RST to the replaced one).

mod common;

use coap_proto::wire::{Code, Message, Type};
use coap_proto::{Event, IncomingHandle, Instant};
use common::*;

const TEMP: u16 = 7;

/// A GET /temp with Observe `obs` (or none) from the client, token `tok`.
fn get(mid: u16, tok: u8, obs: Option<u32>) -> Vec<u8> {
    msg(Type::Con, Code::GET, mid, &[tok], |b| {
        if let Some(v) = obs {
            b.observe(v).unwrap();
        }
        b.uri_path("/temp").unwrap();
    })
}

fn request(ep: &mut Ep, now: Instant, datagram: &[u8]) -> IncomingHandle {
    match ep.handle_datagram(now, CLIENT, datagram) {
        Some(coap_proto::Incoming::Request { handle, .. }) => handle,
        other => panic!("expected a request, got {other:?}"),
    }
}

/// Registers token `tok` for TEMP; returns the piggybacked answer.
fn register(ep: &mut Ep, now: Instant, mid: u16, tok: u8) -> Vec<u8> {
    let h = request(ep, now, &get(mid, tok, Some(0)));
    assert!(
        ep.respond_observe(now, h, TEMP, Code::CONTENT, |b| b.payload(b"20").map(drop))
            .unwrap()
    );
    let d = drain(ep, now);
    assert_eq!(d.sent.len(), 1);
    d.sent[0].1.clone()
}

/// Notifies TEMP with `body`; returns what was sent.
fn notify(ep: &mut Ep, now: Instant, con: bool, body: &'static [u8]) -> Vec<Vec<u8>> {
    let n = ep
        .notify(now, TEMP, con, Code::CONTENT, |b| b.payload(body).map(drop))
        .unwrap();
    assert_eq!(n.due, 0);
    drain(ep, now).sent.into_iter().map(|(_, m)| m).collect()
}

fn observe_of(bytes: &[u8]) -> Option<u32> {
    Message::parse(bytes).unwrap().observe().unwrap()
}

#[test]
fn registration_answers_with_observe_and_replaces_the_same_token() {
    let mut ep = endpoint(1);
    let ack = register(&mut ep, t(0), 0x0100, 0xaa);
    // ACK 2.05, MID 0x0100, token aa, Observe 1 (option 6, one byte), payload "20".
    assert_eq!(
        ack,
        [0x61, 0x45, 0x01, 0x00, 0xaa, 0x61, 0x01, 0xff, b'2', b'0']
    );
    assert_eq!(ep.observers(TEMP), 1);
    // The same peer and token again: one observation still, a newer sequence number.
    let ack = register(&mut ep, t(10), 0x0101, 0xaa);
    assert_eq!(observe_of(&ack), Some(2));
    assert_eq!(ep.observers(TEMP), 1);
    // Another token is another observation.
    register(&mut ep, t(20), 0x0102, 0xbb);
    assert_eq!(ep.observers(TEMP), 2);
}

#[test]
fn a_resource_that_is_not_observed_answers_without_observe() {
    let mut ep = endpoint(1);
    let h = request(&mut ep, t(0), &get(0x0200, 0xaa, Some(0)));
    ep.respond(t(0), h, Code::CONTENT, |b| b.payload(b"20").map(drop))
        .unwrap();
    let d = drain(&mut ep, t(0));
    assert_eq!(observe_of(&d.sent[0].1), None, "declined (§4.1)");
    assert_eq!(ep.observers(TEMP), 0);
    // An error answer registers nothing either.
    let h = request(&mut ep, t(1), &get(0x0201, 0xaa, Some(0)));
    assert!(
        !ep.respond_observe(t(1), h, TEMP, Code::NOT_FOUND, |_| Ok(()))
            .unwrap()
    );
    assert_eq!(observe_of(&drain(&mut ep, t(1)).sent[0].1), None);
    assert_eq!(ep.observers(TEMP), 0);
}

#[test]
fn notifications_carry_token_and_increasing_sequence_numbers() {
    let mut ep = endpoint(1);
    register(&mut ep, t(0), 0x0100, 0xaa);
    let sent = notify(&mut ep, t(1000), false, b"21");
    assert_eq!(sent.len(), 1);
    let m = Message::parse(&sent[0]).unwrap();
    assert_eq!(
        (m.ty(), m.code(), m.token()),
        (Type::Non, Code::CONTENT, &[0xaa][..])
    );
    assert_eq!((m.observe().unwrap(), m.payload()), (Some(2), &b"21"[..]));
    let sent = notify(&mut ep, t(2000), false, b"22");
    assert_eq!(observe_of(&sent[0]), Some(3));
}

#[test]
fn sequence_numbers_wrap_at_2_to_the_24() {
    let mut ep = endpoint(1);
    register(&mut ep, t(0), 0x0100, 0xaa);
    let mut last = 1;
    // 2^24 notifications would take long; the counter is per endpoint, so spin it with
    // notifications of a resource nobody observes.
    for _ in 0..(1u32 << 24) - 3 {
        ep.notify(t(1), 99, false, Code::CONTENT, |_| Ok(()))
            .unwrap();
    }
    for expected in [(1 << 24) - 1, 0, 1] {
        let sent = notify(&mut ep, t(2), false, b"x");
        let seq = observe_of(&sent[0]).unwrap();
        assert_eq!(seq, expected, "after {last}");
        last = seq;
    }
}

#[test]
fn observe_1_rst_and_give_up_each_end_an_observation() {
    let mut ep = endpoint(1);
    // GET with Observe: 1 and the same token.
    register(&mut ep, t(0), 0x0100, 0xaa);
    let h = request(&mut ep, t(1), &get(0x0101, 0xaa, Some(1)));
    assert_eq!(ep.observers(TEMP), 0, "deregistered when it arrives");
    ep.respond(t(1), h, Code::CONTENT, |_| Ok(())).unwrap();
    drain(&mut ep, t(1));

    // RST to a NON notification, matched by its message ID.
    register(&mut ep, t(2), 0x0102, 0xbb);
    let sent = notify(&mut ep, t(3), false, b"x");
    let mid = Message::parse(&sent[0]).unwrap().message_id();
    let [m0, m1] = mid.to_be_bytes();
    assert!(
        ep.handle_datagram(t(4), CLIENT, &[0x70, 0, m0, m1])
            .is_none()
    );
    assert_eq!(ep.observers(TEMP), 0);
    assert_eq!(ep.stats().unmatched, 0, "the RST was the observer's");

    // RST to a CON notification.
    register(&mut ep, t(5), 0x0103, 0xcc);
    let sent = notify(&mut ep, t(6), true, b"x");
    let m = Message::parse(&sent[0]).unwrap();
    assert_eq!(m.ty(), Type::Con);
    let [m0, m1] = m.message_id().to_be_bytes();
    ep.handle_datagram(t(7), CLIENT, &[0x70, 0, m0, m1]);
    let d = drain(&mut ep, t(7));
    assert!(
        d.events.is_empty(),
        "the observer table's business: {:?}",
        d.events
    );
    assert_eq!(ep.observers(TEMP), 0);

    // A CON notification never acknowledged: given up after MAX_RETRANSMIT (4).
    register(&mut ep, t(10), 0x0104, 0xdd);
    notify(&mut ep, t(11), true, b"x");
    let mut now = t(11);
    let mut copies = 1;
    while let Some(at) = drain(&mut ep, now).timeout {
        now = at;
        ep.handle_timeout(now);
        copies += drain(&mut ep, now).sent.len();
        if ep.observers(TEMP) == 0 {
            break;
        }
    }
    assert_eq!(copies, 5, "sent once and retransmitted 4 times");
    assert_eq!(ep.observers(TEMP), 0);
    assert_eq!(ep.exchanges_in_flight(), 0, "every record freed");
}

#[test]
fn an_error_notification_is_the_last() {
    let mut ep = endpoint(1);
    register(&mut ep, t(0), 0x0100, 0xaa);
    let n = ep
        .notify(t(1), TEMP, false, Code::NOT_FOUND, |_| Ok(()))
        .unwrap();
    assert_eq!(n.sent, 1);
    let sent = drain(&mut ep, t(1)).sent;
    let m = Message::parse(&sent[0].1).unwrap();
    assert_eq!((m.code(), m.observe().unwrap()), (Code::NOT_FOUND, None));
    assert_eq!(ep.observers(TEMP), 0);
    // The application may end them itself too.
    register(&mut ep, t(2), 0x0101, 0xbb);
    ep.end_observations(TEMP);
    assert_eq!(ep.observers(TEMP), 0);
    assert!(notify(&mut ep, t(3), false, b"x").is_empty());
}

#[test]
fn a_con_notification_goes_out_at_least_every_24_hours() {
    let mut ep = endpoint(1);
    register(&mut ep, t(0), 0x0100, 0xaa);
    let hour = 3_600_000;
    let ty = |sent: &[Vec<u8>]| Message::parse(&sent[0]).unwrap().ty();
    assert_eq!(ty(&notify(&mut ep, t(23 * hour), false, b"x")), Type::Non);
    let sent = notify(&mut ep, t(24 * hour), false, b"x");
    assert_eq!(ty(&sent), Type::Con, "24 hours since the registration");
    // Acknowledged: NON again for the next 24 hours.
    let mid = Message::parse(&sent[0]).unwrap().message_id().to_be_bytes();
    ep.handle_datagram(t(24 * hour + 10), CLIENT, &[0x60, 0, mid[0], mid[1]]);
    drain(&mut ep, t(24 * hour + 10));
    assert_eq!(ty(&notify(&mut ep, t(47 * hour), false, b"x")), Type::Non);
    assert_eq!(
        ty(&notify(&mut ep, t(48 * hour + 10), false, b"x")),
        Type::Con
    );
}

#[test]
fn a_newer_notification_replaces_the_con_one_in_flight() {
    let mut ep = Ep::new(coap_proto::Config {
        seed: 3,
        params: exact_params(),
        ..coap_proto::Config::default()
    })
    .unwrap();
    register(&mut ep, t(0), 0x0100, 0xaa);
    let first = notify(&mut ep, t(1000), true, b"old");
    let first = Message::parse(&first[0]).unwrap();
    // ACK_TIMEOUT 2 s: retransmitted at 3 s, next due at 7 s.
    ep.handle_timeout(t(3000));
    let again = drain(&mut ep, t(3000));
    assert_eq!(again.sent.len(), 1);
    assert_eq!(again.timeout, Some(t(7000)));
    // A new state at 4 s replaces it: sent at once with a new MID, the same record,
    // and the back-off where it was (next at 7 s, then 15 s).
    let sent = notify(&mut ep, t(4000), false, b"new");
    assert_eq!(sent.len(), 1);
    let m = Message::parse(&sent[0]).unwrap();
    assert_eq!((m.ty(), m.payload()), (Type::Con, &b"new"[..]), "still CON");
    assert_ne!(m.message_id(), first.message_id());
    assert_eq!(
        observe_of(&sent[0]),
        Some(observe_of(first.as_bytes()).unwrap() + 1)
    );
    assert_eq!(
        ep.exchanges_in_flight(),
        1,
        "one notification outstanding (§4.5.1)"
    );
    assert_eq!(drain(&mut ep, t(4000)).timeout, Some(t(7000)));
    // An ACK for the old message matches nothing now; the new one's ends the exchange.
    let old = first.message_id().to_be_bytes();
    ep.handle_datagram(t(4100), CLIENT, &[0x60, 0, old[0], old[1]]);
    assert_eq!(ep.exchanges_in_flight(), 1);
    let new = m.message_id().to_be_bytes();
    ep.handle_datagram(t(4200), CLIENT, &[0x60, 0, new[0], new[1]]);
    drain(&mut ep, t(4200));
    assert_eq!(ep.exchanges_in_flight(), 0);
    assert_eq!(ep.observers(TEMP), 1, "still observing");
}

/// A client that acknowledged the newest notification and then forgot the observation
/// rejects the replaced one arriving late; its RST matches no exchange any more but still
/// names this observation's notification (RFC 7641 §3.6). Found by `sim_observe` (seed
/// 14372 of 20,000).
#[test]
fn a_rst_to_a_replaced_notification_ends_the_observation() {
    let mut ep = endpoint(1);
    register(&mut ep, t(0), 0x0100, 0xaa);
    let old = notify(&mut ep, t(1000), true, b"old");
    let new = notify(&mut ep, t(1010), true, b"new");
    let mid = |bytes: &[u8]| Message::parse(bytes).unwrap().message_id().to_be_bytes();
    let (old, new) = (mid(&old[0]), mid(&new[0]));
    assert_ne!(old, new);
    ep.handle_datagram(t(1020), CLIENT, &[0x60, 0, new[0], new[1]]);
    drain(&mut ep, t(1020));
    assert_eq!((ep.observers(TEMP), ep.exchanges_in_flight()), (1, 0));
    ep.handle_datagram(t(1300), CLIENT, &[0x70, 0, old[0], old[1]]);
    assert_eq!(ep.observers(TEMP), 0);
    assert_eq!(ep.stats().unmatched, 0, "the RST was the observer's");
    // Only this observation's: a RST naming another ID leaves the next one alone.
    register(&mut ep, t(2000), 0x0101, 0xbb);
    let [m0, m1] = (u16::from_be_bytes(new) ^ 0x8000).to_be_bytes();
    ep.handle_datagram(t(2100), CLIENT, &[0x70, 0, m0, m1]);
    assert_eq!(ep.observers(TEMP), 1);
    assert_eq!(ep.stats().unmatched, 1);
}

#[test]
fn observers_left_due_are_told_when_room_frees() {
    // 8 records, 2 kept for answers at once: 6 notifications at a time.
    let mut ep = endpoint(1);
    for tok in 0..8u8 {
        register(&mut ep, t(0), 0x0100 + u16::from(tok), tok);
    }
    let n = ep
        .notify(t(1), TEMP, true, Code::CONTENT, |b| {
            b.payload(b"v2").map(drop)
        })
        .unwrap();
    assert_eq!((n.sent, n.due), (6, 2));
    let d = drain(&mut ep, t(1));
    assert_eq!(d.sent.len(), 6);
    assert!(d.events.is_empty());
    // One ACK frees a record: the application hears of it and sends the rest.
    let mid = Message::parse(&d.sent[0].1)
        .unwrap()
        .message_id()
        .to_be_bytes();
    ep.handle_datagram(t(2), CLIENT, &[0x60, 0, mid[0], mid[1]]);
    let d = drain(&mut ep, t(2));
    assert_eq!(d.events, [Event::NotificationsDue(TEMP)]);
    let n = ep
        .notify_due(t(2), TEMP, true, Code::CONTENT, |b| {
            b.payload(b"v2").map(drop)
        })
        .unwrap();
    assert_eq!((n.sent, n.due), (1, 1), "only the observers still due");
}

// ---- Client role (RFC 7641 §3), against the server role, in memory. ----

use coap_proto::{Incoming, RequestHandle, RequestOptions};

/// Sends a GET /temp with Observe: 0 from `client`; returns its handle and datagram.
fn ask_to_observe(client: &mut Ep) -> (RequestHandle, Vec<u8>) {
    let options = RequestOptions {
        observe: true,
        ..RequestOptions::default()
    };
    let h = client
        .request(t(0), SERVER, Code::GET, &options, |b| {
            b.uri_path("/temp").map(drop)
        })
        .unwrap();
    (h, drain(client, t(0)).sent.remove(0).1)
}

/// A client observing `/temp` on a server that registers it: both endpoints and the
/// observation's handle.
fn observing_pair() -> (Ep, Ep, RequestHandle) {
    let mut client = endpoint(10);
    let mut server = endpoint(20);
    let (h, req) = ask_to_observe(&mut client);
    assert_eq!(
        observe_of(&req),
        Some(0),
        "the registration asks with Observe: 0"
    );
    let sh = match server.handle_datagram(t(0), CLIENT, &req) {
        Some(Incoming::Request { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    server
        .respond_observe(t(0), sh, TEMP, Code::CONTENT, |b| {
            b.payload(b"20").map(drop)
        })
        .unwrap();
    let ack = drain(&mut server, t(0)).sent.remove(0).1;
    match client.handle_datagram(t(0), SERVER, &ack) {
        Some(Incoming::Response {
            handle, message, ..
        }) => {
            assert_eq!((handle, message.payload()), (h, &b"20"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        drain(&mut client, t(0)).events.is_empty(),
        "still observing"
    );
    assert_eq!(client.exchanges_in_flight(), 1);
    (client, server, h)
}

/// Delivers `datagram` to the client; returns the payload delivered (if any) and what
/// the client sent back.
fn to_client(
    client: &mut Ep,
    now: Instant,
    h: RequestHandle,
    datagram: &[u8],
) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    let got = match client.handle_datagram(now, SERVER, datagram) {
        Some(Incoming::Response {
            handle, message, ..
        }) => {
            assert_eq!(handle, h);
            Some(message.payload().to_vec())
        }
        None => None,
        other => panic!("{other:?}"),
    };
    let back = drain(client, now)
        .sent
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    (got, back)
}

#[test]
fn client_gets_notifications_under_its_handle_and_acknowledges_con_ones() {
    let (mut client, mut server, h) = observing_pair();
    server
        .notify(t(1000), TEMP, false, Code::CONTENT, |b| {
            b.payload(b"21").map(drop)
        })
        .unwrap();
    let n = drain(&mut server, t(1000)).sent.remove(0).1;
    assert_eq!(
        to_client(&mut client, t(1000), h, &n),
        (Some(b"21".to_vec()), vec![])
    );
    server
        .notify(t(2000), TEMP, true, Code::CONTENT, |b| {
            b.payload(b"22").map(drop)
        })
        .unwrap();
    let n = drain(&mut server, t(2000)).sent.remove(0).1;
    let (got, back) = to_client(&mut client, t(2000), h, &n);
    assert_eq!(got, Some(b"22".to_vec()));
    let mid = Message::parse(&n).unwrap().message_id().to_be_bytes();
    assert_eq!(back, [vec![0x60, 0, mid[0], mid[1]]], "an empty ACK");
    // The ACK ends the server's exchange; the observation goes on.
    server.handle_datagram(t(2001), CLIENT, &back[0]);
    drain(&mut server, t(2001));
    assert_eq!(
        (server.exchanges_in_flight(), server.observers(TEMP)),
        (0, 1)
    );
}

#[test]
fn an_older_notification_is_not_delivered_unless_128_seconds_passed() {
    let (mut client, mut server, h) = observing_pair();
    let mut notification = |now: Instant, body: &'static [u8]| {
        server
            .notify(now, TEMP, false, Code::CONTENT, |b| {
                b.payload(body).map(drop)
            })
            .unwrap();
        drain(&mut server, now).sent.remove(0).1
    };
    let older = notification(t(1000), b"old");
    let newer = notification(t(1001), b"new");
    // Reordered: the newer arrives first; the older is dropped.
    assert_eq!(
        to_client(&mut client, t(1002), h, &newer).0,
        Some(b"new".to_vec())
    );
    assert_eq!(to_client(&mut client, t(1003), h, &older).0, None);
    // 128 s after the last delivery, any sequence number counts as newer (§3.4).
    let oldest = notification(t(1004), b"x");
    let mut stale = Message::parse(&oldest).unwrap().as_bytes().to_vec();
    // Same notification, but a MID not seen yet and a sequence number behind.
    stale[2] ^= 0x55;
    let at = stale.iter().position(|&b| b == 0x61).unwrap(); // Observe, 1 byte
    stale[at + 1] = 1;
    assert_eq!(
        to_client(&mut client, t(1002 + 128_001), h, &stale).0,
        Some(b"x".to_vec())
    );
}

#[test]
fn freshness_follows_rfc_7641_section_3_4() {
    let fresh = |v1, v2, secs: u64| observe_fresh(v1, v2, secs);
    assert!(fresh(5, 6, 0));
    assert!(!fresh(6, 5, 0));
    assert!(!fresh(5, 5, 0), "a repeat is not newer");
    assert!(fresh(0xff_ffff, 0, 0), "across the 24-bit wrap");
    assert!(!fresh(0, 0xff_ffff, 0));
    assert!(fresh(5, 5 + (1 << 23) - 1, 0));
    assert!(!fresh(5, 5 + (1 << 23), 0), "2^23 ahead is behind");
    assert!(fresh(6, 5, 129), "128 s later anything is newer");
    assert!(!fresh(6, 5, 128));
}

/// Delivers notification V1 to an observing client, then V2 `secs` later; returns
/// whether V2 was delivered. V1 comes 200 s after the registration, so it is always
/// newer than the registration's number.
fn observe_fresh(v1: u32, v2: u32, secs: u64) -> bool {
    let (mut client, _server, h) = observing_pair();
    let token = client_token();
    let note = |mid: u16, v: u32| {
        msg(Type::Non, Code::CONTENT, mid, &token, |b| {
            b.observe(v).unwrap();
        })
    };
    let t1 = 200_000;
    assert!(
        to_client(&mut client, t(t1), h, &note(0x1000, v1))
            .0
            .is_some()
    );
    to_client(&mut client, t(t1 + secs * 1000), h, &note(0x1001, v2))
        .0
        .is_some()
}

/// The token `observing_pair` registers with: the first one an endpoint seeded 10
/// draws for a request.
fn client_token() -> Vec<u8> {
    let (_, req) = ask_to_observe(&mut endpoint(10));
    Message::parse(&req).unwrap().token().to_vec()
}

#[test]
fn forgetting_an_observation_rejects_its_next_notification_and_the_server_lets_go() {
    let (mut client, mut server, h) = observing_pair();
    client.cancel(t(500), h).unwrap();
    assert_eq!(client.exchanges_in_flight(), 0);
    server
        .notify(t(1000), TEMP, false, Code::CONTENT, |b| {
            b.payload(b"21").map(drop)
        })
        .unwrap();
    let n = drain(&mut server, t(1000)).sent.remove(0).1;
    let (got, back) = to_client(&mut client, t(1000), h, &n);
    assert_eq!(got, None);
    let mid = Message::parse(&n).unwrap().message_id().to_be_bytes();
    assert_eq!(back, [vec![0x70, 0, mid[0], mid[1]]], "RST (§3.6)");
    server.handle_datagram(t(1001), CLIENT, &back[0]);
    assert_eq!(server.observers(TEMP), 0);
}

#[test]
fn cancel_observe_sends_observe_1_with_the_same_token() {
    let (mut client, mut server, h) = observing_pair();
    client
        .cancel_observe(t(500), h, |b| b.uri_path("/temp").map(drop))
        .unwrap();
    let req = drain(&mut client, t(500)).sent.remove(0).1;
    let m = Message::parse(&req).unwrap();
    assert_eq!((m.code(), m.observe().unwrap()), (Code::GET, Some(1)));
    let sh = match server.handle_datagram(t(501), CLIENT, &req) {
        Some(Incoming::Request { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    assert_eq!(server.observers(TEMP), 0, "deregistered");
    server
        .respond(t(501), sh, Code::CONTENT, |b| b.payload(b"20").map(drop))
        .unwrap();
    let ack = drain(&mut server, t(501)).sent.remove(0).1;
    let (got, _) = to_client(&mut client, t(502), h, &ack);
    assert_eq!(got, Some(b"20".to_vec()), "its response is the last one");
    assert_eq!(client.exchanges_in_flight(), 0);
}

#[test]
fn a_declined_or_final_answer_ends_the_observation_with_an_event() {
    // Declined: the server answers without Observe.
    let mut client = endpoint(10);
    let mut server = endpoint(20);
    let (h, req) = ask_to_observe(&mut client);
    let Some(Incoming::Request { handle, .. }) = server.handle_datagram(t(0), CLIENT, &req) else {
        panic!()
    };
    server
        .respond(t(0), handle, Code::CONTENT, |b| b.payload(b"20").map(drop))
        .unwrap();
    let ack = drain(&mut server, t(0)).sent.remove(0).1;
    assert!(client.handle_datagram(t(0), SERVER, &ack).is_some());
    let d = drain(&mut client, t(0));
    assert_eq!(d.events, [Event::ObservationEnded(h)]);
    assert_eq!(client.exchanges_in_flight(), 0);

    // Final: a 4.04 notification.
    let (mut client, mut server, h) = observing_pair();
    server
        .notify(t(1000), TEMP, false, Code::NOT_FOUND, |_| Ok(()))
        .unwrap();
    let n = drain(&mut server, t(1000)).sent.remove(0).1;
    assert!(client.handle_datagram(t(1000), SERVER, &n).is_some());
    assert_eq!(
        drain(&mut client, t(1000)).events,
        [Event::ObservationEnded(h)]
    );
    assert_eq!(client.exchanges_in_flight(), 0);
}

#[test]
fn a_large_representation_is_notified_as_its_first_block() {
    let mut ep = endpoint(1);
    register(&mut ep, t(0), 0x0100, 0xaa);
    let body: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let n = ep
        .notify_body(t(1), TEMP, false, Code::CONTENT, &body, |_| Ok(()))
        .unwrap();
    assert_eq!(n.sent, 1);
    let sent = drain(&mut ep, t(1)).sent.remove(0).1;
    let m = Message::parse(&sent).unwrap();
    let block = m.block2().unwrap().unwrap();
    // Ep's 512-byte buffers: 256-byte blocks.
    assert_eq!((block.num(), block.more(), block.size()), (0, true, 256));
    assert_eq!(
        (m.size2().unwrap(), m.payload()),
        (Some(3000), &body[..256])
    );
    assert!(m.observe().unwrap().is_some());
    let etag = m.etag().unwrap().unwrap().to_vec();
    // The observer's follow-up (plain GET, Block2 1) is served from the same body, with
    // the same ETag: the client can tell the blocks belong together.
    let follow = msg(Type::Con, Code::GET, 0x0200, &[0xab], |b| {
        b.uri_path("/temp").unwrap();
        b.block2(coap_proto::wire::Block::new(1, false, 4).unwrap())
            .unwrap();
    });
    let h = request(&mut ep, t(2), &follow);
    let m2 = Message::parse(&follow).unwrap();
    ep.respond_block2(t(2), h, &m2, Code::CONTENT, &body, |_| Ok(()))
        .unwrap();
    let ack = drain(&mut ep, t(2)).sent.remove(0).1;
    let a = Message::parse(&ack).unwrap();
    assert_eq!(a.etag().unwrap(), Some(&etag[..]));
    assert_eq!(a.payload(), &body[256..512]);
    assert_eq!(
        a.observe().unwrap(),
        None,
        "follow-ups are not notifications"
    );
}

#[test]
fn a_client_may_register_again_with_the_same_token() {
    let (mut client, mut server, h) = observing_pair();
    // The server lost the observation (restarted, say); the client asks again.
    server.end_observations(TEMP);
    client
        .reregister(t(70_000), h, |b| b.uri_path("/temp").map(drop))
        .unwrap();
    let req = drain(&mut client, t(70_000)).sent.remove(0).1;
    let m = Message::parse(&req).unwrap();
    assert_eq!(
        (m.observe().unwrap(), m.token()),
        (Some(0), &client_token()[..])
    );
    let sh = match server.handle_datagram(t(70_001), CLIENT, &req) {
        Some(Incoming::Request { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    server
        .respond_observe(t(70_001), sh, TEMP, Code::CONTENT, |b| {
            b.payload(b"30").map(drop)
        })
        .unwrap();
    assert_eq!(server.observers(TEMP), 1, "registered again");
    let ack = drain(&mut server, t(70_001)).sent.remove(0).1;
    assert_eq!(
        to_client(&mut client, t(70_002), h, &ack).0,
        Some(b"30".to_vec())
    );
    // And the observation goes on under the same handle.
    server
        .notify(t(71_000), TEMP, false, Code::CONTENT, |b| {
            b.payload(b"31").map(drop)
        })
        .unwrap();
    let n = drain(&mut server, t(71_000)).sent.remove(0).1;
    assert_eq!(
        to_client(&mut client, t(71_000), h, &n).0,
        Some(b"31".to_vec())
    );
}

#[test]
fn a_notification_crossing_the_deregistration_is_not_its_answer() {
    let (mut client, mut server, h) = observing_pair();
    client
        .cancel_observe(t(500), h, |b| b.uri_path("/temp").map(drop))
        .unwrap();
    let dereg = drain(&mut client, t(500)).sent.remove(0).1;
    // The server notifies before the deregistration arrives.
    server
        .notify(t(501), TEMP, false, Code::CONTENT, |b| {
            b.payload(b"21").map(drop)
        })
        .unwrap();
    let n = drain(&mut server, t(501)).sent.remove(0).1;
    let (got, _) = to_client(&mut client, t(502), h, &n);
    assert_eq!(got, None, "a notification, not the answer to Observe: 1");
    assert_eq!(client.exchanges_in_flight(), 1);
    // Then the deregistration's answer ends it.
    let Some(Incoming::Request { handle, .. }) = server.handle_datagram(t(503), CLIENT, &dereg)
    else {
        panic!()
    };
    server
        .respond(t(503), handle, Code::CONTENT, |b| {
            b.payload(b"21").map(drop)
        })
        .unwrap();
    let ack = drain(&mut server, t(503)).sent.remove(0).1;
    assert_eq!(
        to_client(&mut client, t(504), h, &ack).0,
        Some(b"21".to_vec())
    );
    assert_eq!(client.exchanges_in_flight(), 0);
}
