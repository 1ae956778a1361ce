//! Auto-ETags (RFC 7959 §2.4): keyed, so that bodies made to collide under an unkeyed
//! hash still get different ETags, and a client never joins blocks of two bodies.

mod common;

use std::collections::HashMap;

use coap_proto::block::DownloadError;
use coap_proto::wire::{Block, Code, Type};
use coap_proto::{Event, Incoming, RequestOptions};
use common::*;

/// The auto-ETag this crate used to compute: FNV-1a over the bytes, xor the length.
fn unkeyed(body: &[u8]) -> u32 {
    let h = body.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    h ^ body.len() as u32
}

/// Two different 40-byte bodies with one unkeyed hash (a birthday search).
fn colliding_bodies() -> (Vec<u8>, Vec<u8>) {
    let body = |i: u64| {
        let mut b = vec![b'='; 32];
        b.extend_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        b
    };
    let mut seen = HashMap::new();
    for i in 0..2_000_000u64 {
        let b = body(i);
        if let Some(j) = seen.insert(unkeyed(&b), i) {
            return (body(j), b);
        }
    }
    panic!("no collision in 2,000,000 bodies");
}

/// The ETag a server gives `body` served in 16-byte blocks.
fn served_etag(body: &[u8], block: u32) -> (Vec<u8>, Vec<u8>) {
    let mut s = endpoint(9);
    let request = msg(Type::Con, Code::GET, 1, &[1], |b| {
        b.uri_path("/r").unwrap();
        b.block2(Block::new(block, false, 0).unwrap()).unwrap();
    });
    let Some(Incoming::Request { handle, message }) = s.handle_datagram(t(0), CLIENT, &request)
    else {
        panic!()
    };
    s.respond_block2(t(0), handle, &message, Code::CONTENT, body, |_| Ok(()))
        .unwrap();
    let out = drain(&mut s, t(0));
    let m = parse(&out.sent[0].1);
    (m.etag().unwrap().unwrap().to_vec(), m.payload().to_vec())
}

#[test]
fn bodies_with_equal_unkeyed_hashes_get_different_etags() {
    let (a, b) = colliding_bodies();
    assert_ne!(a, b);
    assert_eq!((a.len(), unkeyed(&a)), (b.len(), unkeyed(&b)));
    let (ea, _) = served_etag(&a, 0);
    let (eb, _) = served_etag(&b, 0);
    assert_eq!(ea.len(), 8);
    assert_ne!(ea, eb);
}

#[test]
fn client_never_joins_blocks_of_a_body_that_changed_mid_transfer() {
    // The server's body changes between block 0 and the rest, to one with the same
    // unkeyed hash: the client sees the ETag change and fails the download.
    let (a, b) = colliding_bodies();
    let mut c = endpoint(10);
    let options = RequestOptions {
        block2_szx: Some(0),
        ..RequestOptions::default()
    };
    let h = c
        .request(t(0), SERVER, Code::GET, &options, |b| {
            b.uri_path("/r").map(drop)
        })
        .unwrap();
    let mut s = endpoint(11);
    let mut got = Vec::new();
    let mut failed = None;
    let mut served = 0;
    for _ in 0..20 {
        let out = drain(&mut c, t(0));
        for e in out.events {
            if let Event::BlockFailed(handle, e) = e {
                assert_eq!(handle, h);
                failed = Some(e);
            }
        }
        if out.sent.is_empty() {
            break;
        }
        for (_, d) in out.sent {
            if let Some(Incoming::Request { handle, message }) = s.handle_datagram(t(0), CLIENT, &d)
            {
                let body = if served == 0 { &a } else { &b };
                served += 1;
                s.respond_block2(t(0), handle, &message, Code::CONTENT, body, |_| Ok(()))
                    .unwrap();
            }
            for (_, r) in drain(&mut s, t(0)).sent {
                if let Some(Incoming::Response { message, .. }) =
                    c.handle_datagram(t(0), SERVER, &r)
                {
                    got.extend_from_slice(message.payload());
                }
            }
        }
    }
    assert_eq!(failed, Some(DownloadError::EtagChanged));
    assert!(
        got.len() < a.len(),
        "no whole body was delivered: {} bytes",
        got.len()
    );
    assert_eq!(c.exchanges_in_flight(), 0);
}
