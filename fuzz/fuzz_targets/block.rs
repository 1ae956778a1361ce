//! Arbitrary Block1/Block2 sequences against both roles. A client endpoint with a
//! block-wise download or upload gets arbitrary responses carrying its own token (so
//! they reach the block logic); a server endpoint serving a body and assembling uploads
//! gets arbitrary block requests. Nothing may panic; outputs must parse; downloaded
//! blocks must arrive in order; an assembled body never exceeds its capacity; slots
//! stay within capacity.
#![no_main]

use arbitrary::Arbitrary;
use coap_proto::block::Block1Assembler;
use coap_proto::wire::{Block, Code, Message, MessageBuilder, Type};
use coap_proto::{Config, Endpoint, Event, Incoming, Instant, Output, RequestOptions};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

type Ep = Endpoint<u8, 4, 6, 512, 16, 2048>;

#[derive(Arbitrary, Debug)]
struct Blockish {
    ty: u8,
    code: u8,
    block1: Option<u32>,
    block2: Option<u32>,
    etag: Option<Vec<u8>>,
    size1: Option<u32>,
    size2: Option<u32>,
    payload_len: u16,
    reuse_token: bool,
    mid: u16,
}

#[derive(Arbitrary, Debug)]
enum Op {
    ToClient(Blockish),
    ToServer(Blockish),
    Advance(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    upload: bool,
    szx: u8,
    late: bool,
    early: Option<u8>,
    server_szx: u8,
    body_len: u16,
    ops: Vec<Op>,
}

fn build(b: &Blockish, token: &[u8], mid: u16) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1400];
    let code = Code::from_u8(b.code)?;
    let mut m = MessageBuilder::new(&mut buf, Type::from_bits(b.ty), code, mid).ok()?;
    m.token(token).ok()?;
    if let Some(v) = b.block1.and_then(|v| Block::from_uint(v & 0xff_ffff)) {
        m.block1(v).ok()?;
    }
    if let Some(v) = b.block2.and_then(|v| Block::from_uint(v & 0xff_ffff)) {
        m.block2(v).ok()?;
    }
    if let Some(e) = &b.etag {
        let _ = m.etag(&e[..e.len().min(8)]);
    }
    if let Some(n) = b.size1 {
        m.size1(n).ok()?;
    }
    if let Some(n) = b.size2 {
        m.size2(n).ok()?;
    }
    m.payload(&vec![0x5a; (b.payload_len % 1100) as usize]).ok()?;
    Some(m.finish().to_vec())
}

fuzz_target!(|input: Input| {
    let mut client = Ep::new(Config { seed: 1, ..Config::default() }).unwrap();
    let mut server = Ep::new(Config { seed: 2, max_block_szx: input.server_szx % 7, ..Config::default() }).unwrap();
    let body: Vec<u8> = (0..input.body_len as usize % 20_000).map(|i| i as u8).collect();
    let mut asm: Block1Assembler<u8, 2, 4096> = Block1Assembler::new();
    let mut now = Instant::ZERO;
    let opts = RequestOptions {
        block2_szx: input.early.map(|s| s % 7),
        block2_late: input.late,
        ..Default::default()
    };
    let handle = if input.upload {
        client.request_upload(now, 2, Code::PUT, &opts, input.szx % 7, |b| { b.uri_path("u")?; Ok(()) })
    } else {
        client.request(now, 2, Code::GET, &opts, |b| { b.uri_path("d")?; Ok(()) })
    }
    .unwrap();
    let mut last_request: Option<(Vec<u8>, u16)> = None;
    let mut received = 0usize;
    for op in input.ops.iter().take(64) {
        // Drain the client: remember its latest request so responses can match it.
        for _ in 0..64 {
            match client.poll_output(now) {
                Output::Transmit(t) => {
                    let m = Message::parse(t.data).expect("client output parses");
                    if m.code().is_request() {
                        last_request = Some((m.token().to_vec(), m.message_id()));
                    }
                }
                Output::Event(Event::BlockNeeded { handle: h, .. }) => {
                    assert_eq!(h, handle);
                    let _ = client.send_body_block(now, h, &body);
                }
                Output::Event(_) => {}
                Output::Timeout(t) => {
                    assert!(t.is_none_or(|t| t > now));
                    break;
                }
            }
        }
        match op {
            Op::ToClient(b) => {
                let (token, mid) = match (&last_request, b.reuse_token) {
                    (Some((t, mid)), true) => (t.clone(), if b.ty & 3 == 2 { *mid } else { b.mid }),
                    _ => (vec![1, 2, 3], b.mid),
                };
                if let Some(bytes) = build(b, &token, mid) {
                    if let Some(Incoming::Response { block, .. }) = client.handle_datagram(now, 2, &bytes) {
                        if let Some(r) = block {
                            assert_eq!(r.offset, received, "blocks in order");
                            received = r.offset + Message::parse(&bytes).unwrap().payload().len();
                        }
                    }
                }
            }
            Op::ToServer(b) => {
                let token = [9u8, 9];
                if let Some(bytes) = build(b, &token, b.mid) {
                    if let Some(Incoming::Request { handle, message }) = server.handle_datagram(now, 1, &bytes) {
                        if message.block1().ok().flatten().is_some() {
                            if let Ok(Some(done)) = server.assemble_block1(now, handle, &message, &mut asm) {
                                assert!(done.body.len() <= 4096);
                                let _ = server.respond(now, handle, Code::CHANGED, |_| Ok(()));
                            }
                        } else {
                            let _ = server.respond_block2(now, handle, &message, Code::CONTENT, &body, |_| Ok(()));
                        }
                    }
                    for _ in 0..64 {
                        match server.poll_output(now) {
                            Output::Transmit(t) => {
                                Message::parse(t.data).expect("server output parses");
                            }
                            Output::Event(_) => {}
                            Output::Timeout(_) => break,
                        }
                    }
                }
            }
            Op::Advance(ms) => now = now + Duration::from_millis(*ms as u64 * 50),
        }
        assert!(client.exchanges_in_flight() <= 4 && server.exchanges_in_flight() <= 4);
    }
});
