//! Observer places under floods (RFC 7641 §4.1, §4.5; DESIGN principle 8): one peer's
//! registrations cost that peer, never the others; observers that vanished give their
//! places up within a bounded time, so a newcomer is not declined for minutes.

mod common;

use coap_proto::wire::{Code, Type};
use coap_proto::{Amplification, Config, Endpoint, Incoming, Instant};
use common::*;

/// 16 observer places, peers numbered up to 65,535; buffers enough to notify all.
type Server = Endpoint<u16, 64, 32, 512, 64, 8192, 16, 16>;

const RESOURCE: u16 = 3;

fn server(amplification: Option<Amplification>) -> Server {
    Server::new(Config {
        seed: 5,
        amplification,
        ..Config::default()
    })
    .unwrap()
}

/// Peer `peer` registers token `tok`; returns whether it got a place.
fn register(s: &mut Server, now: Instant, peer: u16, tok: u16) -> bool {
    let get = msg(Type::Con, Code::GET, tok, &tok.to_be_bytes(), |b| {
        b.observe(0).unwrap();
        b.uri_path("/r").unwrap();
    });
    let Some(Incoming::Request { handle, .. }) = s.handle_datagram(now, peer, &get) else {
        panic!("registration delivered")
    };
    let observing = s
        .respond_observe(now, handle, RESOURCE, Code::CONTENT, |b| {
            b.payload(b"1").map(drop)
        })
        .unwrap();
    let out = drain(s, now);
    let answer = parse(&out.sent[0].1);
    assert_eq!(answer.observe().unwrap().is_some(), observing);
    observing
}

/// Which of `peers` hold a place: each notified once, NON and confirmed or CON.
fn holders(s: &mut Server, now: Instant, peers: impl Iterator<Item = u16>) -> Vec<u16> {
    let n = s
        .notify(now, RESOURCE, false, Code::CONTENT, |b| {
            b.payload(b"2").map(drop)
        })
        .unwrap();
    assert_eq!(n.due, 0);
    let notified: Vec<u16> = drain(s, now).sent.into_iter().map(|(p, _)| p).collect();
    peers.filter(|p| notified.contains(p)).collect()
}

#[test]
fn one_peer_registering_100_observations_does_not_lock_out_10_others() {
    for amplification in [None, Some(Amplification::RFC9175)] {
        let mut s = server(amplification);
        let flooder = 1000;
        let mut others = Vec::new();
        // The flooder first takes what it may, then goes on between the others.
        for tok in 0..100u16 {
            register(&mut s, t(tok as u64), flooder, tok);
            if tok % 10 == 9 {
                let peer = 1 + tok / 10;
                assert!(
                    register(&mut s, t(tok as u64), peer, 7),
                    "peer {peer} got a place ({amplification:?})"
                );
                others.push(peer);
            }
        }
        let now = t(200);
        assert_eq!(
            holders(&mut s, now, others.iter().copied()),
            others,
            "every one of the 10 still observes"
        );
        let flooders = s.observers(RESOURCE) - others.len();
        assert!(flooders <= 8, "the flooder within its share: {flooders}");
        assert!(s.stats().observers_declined >= 92);
    }
}

#[test]
fn newcomer_gets_a_place_among_5000_silent_unconfirmed_observers_within_max_transmit_wait() {
    // Amplification mitigation on (the std and tokio servers' default): 5,000
    // registrations from as many addresses that never answer anything. They are not
    // confirmed (no notification was acknowledged), so once an unconfirmed observer
    // has had MAX_TRANSMIT_WAIT (93 s) to confirm, a newcomer takes its place.
    let mut s = server(Some(Amplification::RFC9175));
    for peer in 0..5000u16 {
        register(&mut s, t(peer as u64), 10_000 + peer, peer);
    }
    assert_eq!(s.observers(RESOURCE), 16);
    // 50 s later: none has had its 93 s yet.
    assert!(!register(&mut s, t(50_000), 1, 1), "declined for now");
    // 93 s after the flood's first registrations, the newcomer gets a place at once.
    assert!(
        register(&mut s, t(5_000 + 93_000), 1, 2),
        "a place within 93 s"
    );
    assert!(
        register(&mut s, t(5_000 + 93_000), 2, 1),
        "and another newcomer"
    );
    assert_eq!(s.observers(RESOURCE), 16);
}

#[test]
fn confirmed_observers_that_vanished_are_checked_and_give_their_places_up() {
    // Without amplification mitigation every observer counts as confirmed. 16 that
    // vanish hold every place; a newcomer is declined, and the observer confirmed longest
    // ago gets a CON notification with the next change (RFC 7641 §4.5). It does not
    // answer: given up after MAX_TRANSMIT_WAIT, its place is the newcomer's.
    let mut s = server(None);
    for peer in 0..16u16 {
        assert!(register(&mut s, t(2_000 * peer as u64), 100 + peer, peer));
    }
    let mut now = 40_000;
    assert!(!register(&mut s, t(now), 1, 1), "declined: table full");
    now += 1_000;
    s.notify(t(now), RESOURCE, false, Code::CONTENT, |b| {
        b.payload(b"2").map(drop)
    })
    .unwrap();
    let sent = drain(&mut s, t(now)).sent;
    assert_eq!(sent.len(), 16);
    let con: Vec<u16> = sent
        .iter()
        .filter(|(_, m)| parse(m).ty() == Type::Con)
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(con, vec![100], "the oldest is asked to acknowledge");
    // Nobody answers; retransmissions run their course (RFC 7252: 93 s at most).
    let start = now;
    while now < start + 100_000 {
        now += 500;
        s.handle_timeout(t(now));
        drain(&mut s, t(now));
    }
    assert_eq!(s.observers(RESOURCE), 15, "its place is free");
    assert!(
        register(&mut s, t(now), 1, 2),
        "the newcomer's, within 95 s"
    );
}

#[test]
fn spoofed_rsts_guessed_from_ones_own_message_ids_do_not_end_anothers_observation() {
    // An attacker (peer 66) observes too and reads the message IDs of its own
    // notifications; it sends RSTs from the victim's address (peer 77) with the IDs
    // around its own, 32 of them after every notification. The victim's message IDs are
    // offset by a keyed hash of its address (RFC 7252 §4.4 asks only that they differ),
    // so none matches, and the victim keeps observing.
    let mut s = server(None);
    let (attacker, victim) = (66, 77);
    assert!(register(&mut s, t(0), victim, 1));
    assert!(register(&mut s, t(0), attacker, 2));
    for round in 1..=20u64 {
        let now = t(round * 1000);
        s.notify(now, RESOURCE, false, Code::CONTENT, |b| {
            b.payload(b"x").map(drop)
        })
        .unwrap();
        let sent = drain(&mut s, now).sent;
        let own = sent
            .iter()
            .find(|(p, _)| *p == attacker)
            .map(|(_, m)| parse(m).message_id())
            .unwrap();
        for d in 0..32u16 {
            let guess = own.wrapping_sub(16).wrapping_add(d);
            let rst = msg(Type::Rst, Code::EMPTY, guess, &[], |_| {});
            s.handle_datagram(now, victim, &rst);
        }
        drain(&mut s, now);
        assert_eq!(
            s.observers(RESOURCE),
            2,
            "round {round}: the victim still observes"
        );
    }
}
