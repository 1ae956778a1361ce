//! Block-wise transfer of 1 MiB through two in-memory endpoints, in 1024-byte blocks.
//!
//! ```text
//! cargo bench --bench blockwise
//! ```
//!
//! Download: the client GETs, the server answers each block request with
//! `respond_block2` from a 1 MiB body. Upload: `request_upload` with `send_body_block`,
//! the server assembling with `assemble_block1`. Each datagram is handed over as the
//! run loop would; MB/s counts body bytes.

use std::hint::black_box;
use std::time::Instant as Clock;

use coap_proto::block::Block1Assembler;
use coap_proto::wire::Code;
use coap_proto::{Config, Endpoint, Event, Incoming, Instant, Output, RequestOptions};

type Ep = Endpoint<u8, 4, 6, 1152, 64, 8192>;
const MIB: usize = 1 << 20;

fn endpoints() -> (Ep, Ep) {
    (
        Ep::new(Config {
            seed: 1,
            ..Config::default()
        })
        .unwrap(),
        Ep::new(Config {
            seed: 2,
            ..Config::default()
        })
        .unwrap(),
    )
}

fn download(body: &[u8]) -> usize {
    let (mut client, mut server) = endpoints();
    let now = Instant::ZERO;
    client
        .request(now, 2, Code::GET, &RequestOptions::default(), |b| {
            b.uri_path("/fw")?;
            Ok(())
        })
        .unwrap();
    let mut got = 0;
    let mut datagram = Vec::with_capacity(1200);
    loop {
        let Output::Transmit(t) = client.poll_output(now) else {
            unreachable!("a block request")
        };
        datagram.clear();
        datagram.extend_from_slice(t.data);
        while let Output::Transmit(_) = client.poll_output(now) {}
        if let Some(Incoming::Request { handle, message }) =
            server.handle_datagram(now, 1, &datagram)
        {
            server
                .respond_block2(now, handle, &message, Code::CONTENT, body, |_| Ok(()))
                .unwrap();
        }
        let Output::Transmit(t) = server.poll_output(now) else {
            unreachable!("a response")
        };
        datagram.clear();
        datagram.extend_from_slice(t.data);
        while let Output::Transmit(_) = server.poll_output(now) {}
        if let Some(Incoming::Response { message, block, .. }) =
            client.handle_datagram(now, 2, &datagram)
        {
            got += black_box(message.payload()).len();
            if block.is_none_or(|b| b.last) {
                return got;
            }
        }
    }
}

fn upload(body: &[u8], asm: &mut Block1Assembler<u8, 1, { MIB + 1024 }>) -> usize {
    let (mut client, mut server) = endpoints();
    let now = Instant::ZERO;
    let h = client
        .request_upload(now, 2, Code::PUT, &RequestOptions::default(), 6, |b| {
            b.uri_path("/fw")?;
            Ok(())
        })
        .unwrap();
    let mut datagram = Vec::with_capacity(1200);
    let mut stored = 0;
    loop {
        let mut sent = false;
        loop {
            match client.poll_output(now) {
                Output::Transmit(t) => {
                    datagram.clear();
                    datagram.extend_from_slice(t.data);
                    sent = true;
                }
                Output::Event(Event::BlockNeeded { .. }) => {
                    client.send_body_block(now, h, body).unwrap()
                }
                Output::Event(e) => panic!("{e}"),
                Output::Timeout(_) => break,
            }
        }
        if !sent {
            return stored;
        }
        if let Some(Incoming::Request { handle, message }) =
            server.handle_datagram(now, 1, &datagram)
        {
            if let Some(done) = server.assemble_block1(now, handle, &message, asm).unwrap() {
                stored = black_box(done.body).len();
                let echo = done.echo;
                server
                    .respond(now, handle, Code::CHANGED, |b| {
                        if let Some(e) = echo {
                            b.block1(e)?;
                        }
                        Ok(())
                    })
                    .unwrap();
            }
        }
        let Output::Transmit(t) = server.poll_output(now) else {
            unreachable!("a response")
        };
        datagram.clear();
        datagram.extend_from_slice(t.data);
        client.handle_datagram(now, 2, &datagram);
    }
}

fn median_mbps(mut run: impl FnMut() -> usize) -> f64 {
    let mut rates: Vec<f64> = (0..11)
        .map(|_| {
            let t = Clock::now();
            let n = run();
            assert_eq!(n, MIB);
            n as f64 / 1e6 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[5]
}

fn main() {
    let body: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut asm = Box::new(Block1Assembler::new());
    if let [cmd, what] = &args[..] {
        if cmd == "count" {
            let n = if what == "upload" {
                upload(&body, &mut asm)
            } else {
                download(&body)
            };
            assert_eq!(n, MIB);
            return;
        }
    }
    println!("blockwise: 1 MiB in 1024-byte blocks, median of 11 runs");
    println!("download {:>8.1} MB/s", median_mbps(|| download(&body)));
    println!(
        "upload   {:>8.1} MB/s",
        median_mbps(|| upload(&body, &mut asm))
    );
}
