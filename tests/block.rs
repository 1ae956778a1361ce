//! The block-wise machines composed as the endpoint composes them (RFC 7959): whatever
//! the body size (0 B to 64 KiB, exact multiples of the block size included) and block
//! sizes on either side, the client ends up with exactly the served bytes, in order,
//! once; an upload delivers exactly the bytes sent.

use std::time::Duration;

use coap_proto::Instant;
use coap_proto::block::{
    Assembled, Block1Assembler, Block1Upload, Block2Download, UploadStep, serve_block2,
};
use coap_proto::wire::{Block, Code};
use proptest::prelude::*;

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn body_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..=65_536,
        (0usize..=64, 0u8..=6).prop_map(|(n, szx)| n << (szx + 4)), // exact multiples
    ]
}

/// Downloads `body` through `serve_block2` and `Block2Download`; returns what arrived
/// and the number of requests.
fn download(body: &[u8], early: Option<u8>, server_max: u8) -> (Vec<u8>, usize) {
    let mut d = match early {
        Some(szx) => Block2Download::new().with_early(szx),
        None => Block2Download::new(),
    };
    let mut got = Vec::new();
    let mut requests = 0;
    loop {
        requests += 1;
        assert!(requests <= 70_000, "no progress");
        let asked = d.next_request_block();
        let slice = serve_block2(asked, false, body.len(), server_max).expect("served");
        let (block, payload, size2) = match slice {
            Some(s) => (Some(s.block), &body[s.range.clone()], s.size2),
            None => (None, body, None),
        };
        let r = d
            .on_response(block, Some(&[0xe7]), size2, payload.len())
            .expect("accepted");
        assert_eq!(r.offset, got.len(), "blocks arrive in order, once");
        got.extend_from_slice(payload);
        if r.last {
            assert!(d.next_request_block().is_none());
            return (got, requests);
        }
    }
}

/// Uploads `body` through `Block1Upload` and `Block1Assembler`.
fn upload(body: &[u8], client_szx: u8) -> Vec<u8> {
    let mut up = Block1Upload::new(client_szx);
    let mut server: Block1Assembler<u8, 2, 70_000> = Block1Assembler::new();
    let life = Duration::from_secs(247);
    for _ in 0..70_000 {
        let (block, range) = up.next_block(body.len()).expect("a block to send");
        match server
            .on_block(Instant::ZERO, 1, 77, block, None, &body[range], life, 1)
            .expect("taken")
        {
            Assembled::Continue(ack) => {
                assert_eq!(
                    up.on_response(Code::CONTINUE, Some(ack), None),
                    Ok(UploadStep::Continue)
                );
            }
            Assembled::Complete(whole) => {
                let whole = whole.to_vec();
                assert_eq!(
                    up.on_response(Code::CHANGED, None, None),
                    Ok(UploadStep::Done)
                );
                return whole;
            }
        }
    }
    panic!("no progress");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn download_delivers_exactly_the_served_bytes(
        len in body_len(), seed in any::<u8>(), early in prop::option::of(0u8..=6), server_max in 0u8..=6,
    ) {
        let b = body(len, seed);
        let (got, requests) = download(&b, early, server_max);
        prop_assert_eq!(&got, &b);
        // One request per block of the size actually used.
        let size = 16usize << early.unwrap_or(6).min(server_max);
        let blocks = if early.is_none() && len <= 16 << server_max { 1 } else { len.div_ceil(size).max(1) };
        prop_assert_eq!(requests, blocks);
    }

    #[test]
    fn upload_delivers_exactly_the_bytes_sent(len in body_len(), seed in any::<u8>(), szx in 0u8..=6) {
        let b = body(len, seed);
        prop_assert_eq!(upload(&b, szx), b);
    }
}

#[test]
fn server_preferring_smaller_block1_size_mid_transfer() {
    // Figure 9 of RFC 7959 in spirit: the server answers the first 128-byte block with
    // a 32-byte preference; the client continues at block 4 of 32 bytes.
    let b = body(300, 1);
    let mut up = Block1Upload::new(3);
    let mut server: Block1Assembler<u8, 1, 512> = Block1Assembler::new();
    let life = Duration::from_secs(247);
    let mut nums = vec![];
    loop {
        let (block, range) = up.next_block(b.len()).unwrap();
        nums.push((block.num(), block.size()));
        match server
            .on_block(Instant::ZERO, 1, 5, block, None, &b[range], life, 1)
            .unwrap()
        {
            Assembled::Continue(ack) => {
                let prefer = Block::new(ack.num(), true, ack.szx().min(1)).unwrap();
                up.on_response(Code::CONTINUE, Some(prefer), None).unwrap();
            }
            Assembled::Complete(whole) => {
                assert_eq!(whole, &b[..]);
                break;
            }
        }
    }
    assert_eq!(&nums[..3], &[(0, 128), (4, 32), (5, 32)]);
}
