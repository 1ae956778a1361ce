//! RFC 7959 §3.1, Figures 2–6, replayed between two endpoints: the Block2 option of
//! every request and response, as the figures show them (`num/m/size`), and the body
//! the client reassembles.

mod common;

use coap_proto::wire::{Code, Type};
use coap_proto::{Config, Endpoint, Incoming, Instant, Output, RequestOptions};
use common::{CLIENT, SERVER, parse};

type Ep = Endpoint<u8, 8, 10, 1152, 16, 4608>;

struct Run {
    /// One line per datagram that arrived: "C>S CON 2:1/0/128" etc.
    log: Vec<String>,
    body: Vec<u8>,
    blocks: usize,
    handled: usize,
}

fn describe(dir: &str, bytes: &[u8]) -> String {
    let m = parse(bytes);
    let b2 = m
        .block2()
        .unwrap()
        .map_or(String::new(), |b| format!(" 2:{b}"));
    format!("{dir} {} {}{b2}", m.ty(), m.code())
}

/// Runs a GET for a `len`-byte body; `drop` says which datagrams (by arrival order,
/// counting both directions) the network loses.
fn transfer(len: usize, server_szx: u8, opts: RequestOptions<'_>, drop: &[usize]) -> Run {
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut client = Ep::new(Config {
        seed: 11,
        ..Config::default()
    })
    .unwrap();
    let mut server = Ep::new(Config {
        seed: 12,
        max_block_szx: server_szx,
        ..Config::default()
    })
    .unwrap();
    let mut now = Instant::ZERO;
    let handle = client
        .request(now, SERVER, Code::GET, &opts, |b| {
            b.uri_path("/status")?;
            Ok(())
        })
        .unwrap();
    let mut run = Run {
        log: vec![],
        body: vec![],
        blocks: 0,
        handled: 0,
    };
    // A slice fetch starts at the block holding the offset: the bytes before it are
    // taken as known, so the whole body can still be compared.
    if opts.block2_offset > 0 {
        let size = 16usize << opts.block2_szx.unwrap_or(6);
        run.body = body[..opts.block2_offset / size * size].to_vec();
    }
    let mut n = 0;
    for _ in 0..200 {
        let mut idle = true;
        let mut to_server = vec![];
        let client_timeout = loop {
            match client.poll_output(now) {
                Output::Transmit(t) => to_server.push(t.data.to_vec()),
                Output::Event(e) => panic!("client event {e}"),
                Output::Timeout(t) => break t,
            }
        };
        for d in to_server {
            idle = false;
            n += 1;
            if drop.contains(&n) {
                continue;
            }
            run.log.push(describe("C>S", &d));
            if let Some(Incoming::Request { handle, message }) =
                server.handle_datagram(now, CLIENT, &d)
            {
                run.handled += 1;
                server
                    .respond_block2(now, handle, &message, Code::CONTENT, &body, |_| Ok(()))
                    .unwrap();
            }
        }
        let mut to_client = vec![];
        while let Output::Transmit(t) = server.poll_output(now) {
            to_client.push(t.data.to_vec());
        }
        for d in to_client {
            idle = false;
            n += 1;
            if drop.contains(&n) {
                continue;
            }
            run.log.push(describe("S>C", &d));
            if let Some(Incoming::Response {
                handle: h,
                message,
                block,
            }) = client.handle_datagram(now, SERVER, &d)
            {
                assert_eq!(h, handle);
                run.blocks += 1;
                let offset = block.map_or(0, |b| b.offset);
                assert_eq!(offset, run.body.len(), "blocks in order, once");
                run.body.extend_from_slice(message.payload());
                if block.is_none_or(|b| b.last) {
                    assert_eq!(client.exchanges_in_flight(), 0);
                    assert_eq!(run.body, body);
                    return run;
                }
            }
        }
        if idle {
            // Nothing moved: let the retransmission timer fire.
            now = client_timeout.expect("a retransmission is due");
        }
    }
    panic!("transfer did not finish: {:#?}", run.log);
}

fn blocks(log: &[String]) -> Vec<&str> {
    log.iter().map(|l| l.as_str()).collect()
}

#[test]
fn figure_2_simple_block_wise_get() {
    let run = transfer(300, 3, RequestOptions::default(), &[]);
    assert_eq!(
        blocks(&run.log),
        [
            "C>S CON GET",
            "S>C ACK 2.05 Content 2:0/1/128",
            "C>S CON GET 2:1/0/128",
            "S>C ACK 2.05 Content 2:1/1/128",
            "C>S CON GET 2:2/0/128",
            "S>C ACK 2.05 Content 2:2/0/128",
        ]
    );
}

#[test]
fn figure_3_early_negotiation() {
    let opts = RequestOptions {
        block2_szx: Some(2),
        ..Default::default()
    };
    let run = transfer(330, 6, opts, &[]);
    let mut expected = vec![];
    for num in 0..6 {
        let more = if num < 5 { 1 } else { 0 };
        expected.push(format!("C>S CON GET 2:{num}/0/64"));
        expected.push(format!("S>C ACK 2.05 Content 2:{num}/{more}/64"));
    }
    assert_eq!(run.log, expected);
    assert_eq!(run.blocks, 6);
}

fn late_negotiation_expected() -> Vec<String> {
    let mut expected = vec![
        String::from("C>S CON GET"),
        String::from("S>C ACK 2.05 Content 2:0/1/128"),
    ];
    for num in 2..6 {
        let more = if num < 5 { 1 } else { 0 };
        expected.push(format!("C>S CON GET 2:{num}/0/64"));
        expected.push(format!("S>C ACK 2.05 Content 2:{num}/{more}/64"));
    }
    expected
}

#[test]
fn figure_4_late_negotiation() {
    let opts = RequestOptions {
        block2_szx: Some(2),
        block2_late: true,
        ..Default::default()
    };
    let run = transfer(330, 3, opts, &[]);
    assert_eq!(run.log, late_negotiation_expected());
}

#[test]
fn figure_5_late_negotiation_with_lost_con() {
    let opts = RequestOptions {
        block2_szx: Some(2),
        block2_late: true,
        ..Default::default()
    };
    // Datagram 3 is the request for 2/0/64: lost, then retransmitted with the same MID.
    let run = transfer(330, 3, opts, &[3]);
    assert_eq!(run.log, late_negotiation_expected());
}

#[test]
fn figure_6_late_negotiation_with_lost_ack() {
    let opts = RequestOptions {
        block2_szx: Some(2),
        block2_late: true,
        ..Default::default()
    };
    // Datagram 4 is the ACK carrying 2/1/64: lost; the retransmitted request is
    // answered with the same reply from the dedup cache.
    let run = transfer(330, 3, opts, &[4]);
    let mut expected = late_negotiation_expected();
    expected.insert(2, String::from("C>S CON GET 2:2/0/64"));
    assert_eq!(run.log, expected);
    assert!(run.log.iter().all(|l| !l.contains(&Type::Rst.to_string())));
    assert_eq!(
        run.handled, 5,
        "the duplicate was answered from the dedup cache"
    );
}

mod misbehaving_server {
    use super::*;
    use coap_proto::Event;
    use coap_proto::block::DownloadError;
    use coap_proto::wire::Block;
    use common::msg;

    /// Sends a GET, answers its requests with `reply(n, request)`, and returns the events
    /// the client reported and the blocks it accepted.
    fn scripted(
        opts: RequestOptions<'_>,
        reply: impl Fn(usize, &coap_proto::wire::Message<'_>) -> Vec<u8>,
    ) -> (Vec<Event>, usize) {
        let mut client = Ep::new(Config {
            seed: 3,
            ..Config::default()
        })
        .unwrap();
        let now = Instant::ZERO;
        client
            .request(now, SERVER, Code::GET, &opts, |b| {
                b.uri_path("/x")?;
                Ok(())
            })
            .unwrap();
        let (mut events, mut accepted) = (vec![], 0);
        for n in 0..10 {
            let mut sent = vec![];
            loop {
                match client.poll_output(now) {
                    Output::Transmit(t) => sent.push(t.data.to_vec()),
                    Output::Event(e) => events.push(e),
                    Output::Timeout(_) => break,
                }
            }
            let Some(req) = sent.first() else { break };
            let req = parse(req);
            let resp = reply(n, &req);
            if let Some(Incoming::Response { .. }) = client.handle_datagram(now, SERVER, &resp) {
                accepted += 1;
            }
        }
        assert_eq!(client.exchanges_in_flight(), 0, "the slot is freed");
        (events, accepted)
    }

    fn block_reply(
        req: &coap_proto::wire::Message<'_>,
        num: u32,
        more: bool,
        szx: u8,
        etag: &[u8],
    ) -> Vec<u8> {
        let size = 16usize << szx;
        msg(
            Type::Ack,
            Code::CONTENT,
            req.message_id(),
            req.token(),
            |b| {
                b.etag(etag).unwrap();
                b.block2(Block::new(num, more, szx).unwrap()).unwrap();
                b.payload(&vec![0x55; size]).unwrap();
            },
        )
    }

    #[test]
    fn changed_etag_ends_the_transfer() {
        let (events, accepted) = scripted(RequestOptions::default(), |n, req| {
            block_reply(req, n as u32, true, 2, if n < 2 { &[1] } else { &[2] })
        });
        assert_eq!(accepted, 2);
        assert!(
            matches!(
                events[..],
                [Event::BlockFailed(_, DownloadError::EtagChanged)]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn skipped_block_ends_the_transfer() {
        let (events, accepted) = scripted(RequestOptions::default(), |n, req| {
            block_reply(req, if n == 0 { 0 } else { 2 }, true, 2, &[1])
        });
        assert_eq!(accepted, 1);
        assert!(
            matches!(
                events[..],
                [Event::BlockFailed(
                    _,
                    DownloadError::UnexpectedBlock {
                        expected: 64,
                        got: 128
                    }
                )]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn larger_block_size_than_announced_ends_the_transfer() {
        let opts = RequestOptions {
            block2_szx: Some(1),
            ..Default::default()
        };
        let (events, accepted) = scripted(opts, |_, req| block_reply(req, 0, true, 2, &[1]));
        assert_eq!(accepted, 0);
        assert!(
            matches!(
                events[..],
                [Event::BlockFailed(_, DownloadError::LargerBlockSize)]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn fresh_token_per_block_when_asked() {
        let opts = RequestOptions {
            fresh_token_per_block: true,
            ..Default::default()
        };
        let tokens = std::cell::RefCell::new(vec![]);
        let (events, accepted) = scripted(opts, |n, req| {
            tokens.borrow_mut().push(req.token().to_vec());
            block_reply(req, n as u32, n < 2, 2, &[1])
        });
        assert!(events.is_empty());
        assert_eq!(accepted, 3);
        let t = tokens.borrow();
        assert!(t[0] != t[1] && t[1] != t[2], "{t:?}");
    }
}

mod block1 {
    use super::*;
    use coap_proto::block::Block1Assembler;
    use coap_proto::wire::{Block, Message};
    use coap_proto::{Event, IncomingHandle};

    pub type Asm = Block1Assembler<u8, 2, 1024>;

    fn describe_blocks(dir: &str, bytes: &[u8]) -> String {
        let m = parse(bytes);
        let mut s = format!("{dir} {} {}", m.ty(), m.code());
        if let Some(b) = m.block2().unwrap() {
            s += &format!(" 2:{b}");
        }
        if let Some(b) = m.block1().unwrap() {
            s += &format!(" 1:{b}");
        }
        s
    }

    pub struct Upload {
        pub log: Vec<String>,
        pub final_code: Option<Code>,
        pub final_size1: Option<u32>,
        pub response_body: Vec<u8>,
        pub events: Vec<Event>,
    }

    /// Uploads `body` with blocks of `szx`, the server answering through `serve`;
    /// `pause` delays the client's blocks after the first (to let assemblies expire).
    pub fn upload(
        body: &[u8],
        method: Code,
        szx: u8,
        opts: RequestOptions<'_>,
        server_szx: u8,
        pause: std::time::Duration,
        mut serve: impl FnMut(&mut Ep, Instant, IncomingHandle, &Message<'_>),
    ) -> Upload {
        let mut client = Ep::new(Config {
            seed: 21,
            ..Config::default()
        })
        .unwrap();
        let mut server = Ep::new(Config {
            seed: 22,
            max_block_szx: server_szx,
            ..Config::default()
        })
        .unwrap();
        let mut now = Instant::ZERO;
        let h = client
            .request_upload(now, SERVER, method, &opts, szx, |b| {
                b.uri_path("/options")?;
                Ok(())
            })
            .unwrap();
        let mut run = Upload {
            log: vec![],
            final_code: None,
            final_size1: None,
            response_body: vec![],
            events: vec![],
        };
        for _ in 0..100 {
            let mut to_server = vec![];
            let mut needed = false;
            loop {
                match client.poll_output(now) {
                    Output::Transmit(t) => to_server.push(t.data.to_vec()),
                    Output::Event(Event::BlockNeeded { handle, offset, .. }) => {
                        assert_eq!(handle, h);
                        if offset > 0 {
                            now = now + pause;
                        }
                        client.send_body_block(now, h, body).unwrap();
                        needed = true;
                    }
                    Output::Event(e) => run.events.push(e),
                    Output::Timeout(_) => break,
                }
            }
            if to_server.is_empty() && !needed {
                return run;
            }
            for d in to_server {
                run.log.push(describe_blocks("C>S", &d));
                if let Some(Incoming::Request { handle, message }) =
                    server.handle_datagram(now, CLIENT, &d)
                {
                    serve(&mut server, now, handle, &message);
                }
            }
            while let Output::Transmit(t) = server.poll_output(now) {
                let d = t.data.to_vec();
                run.log.push(describe_blocks("S>C", &d));
                if let Some(Incoming::Response {
                    handle,
                    message,
                    block,
                }) = client.handle_datagram(now, SERVER, &d)
                {
                    assert_eq!(handle, h);
                    run.final_code = Some(message.code());
                    run.final_size1 = message.size1().unwrap();
                    assert_eq!(block.map_or(0, |b| b.offset), run.response_body.len());
                    run.response_body.extend_from_slice(message.payload());
                }
            }
        }
        panic!("upload did not settle: {:#?}", run.log);
    }

    /// An atomic server: assembles with `asm` and answers the body with `final_code`,
    /// or, with `result`, with that body block-wise (also to the follow-ups).
    pub fn atomic<'a>(
        asm: &'a mut Asm,
        got: &'a mut Vec<u8>,
        result: Option<&'a [u8]>,
    ) -> impl FnMut(&mut Ep, Instant, IncomingHandle, &Message<'_>) + 'a {
        move |ep, now, handle, msg| {
            if msg.block1().unwrap().is_none() {
                // A follow-up for another block of the response.
                ep.respond_block2(now, handle, msg, Code::CHANGED, result.unwrap(), |_| Ok(()))
                    .unwrap();
                return;
            }
            let mut local = Asm::new();
            std::mem::swap(asm, &mut local);
            let done = ep
                .assemble_block1(now, handle, msg, &mut local)
                .unwrap()
                .map(|r| (r.body.to_vec(), r.echo));
            std::mem::swap(asm, &mut local);
            if let Some((body, echo)) = done {
                *got = body;
                let echo = echo.unwrap();
                match result {
                    Some(r) => ep
                        .respond_block2(now, handle, msg, Code::CHANGED, r, |b| {
                            b.block1(echo)?;
                            Ok(())
                        })
                        .unwrap(),
                    None => ep
                        .respond(now, handle, Code::CHANGED, |b| {
                            b.block1(echo)?;
                            Ok(())
                        })
                        .unwrap(),
                }
            }
        }
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 256) as u8).collect()
    }

    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(|s| s.as_str()).collect()
    }

    const NO_PAUSE: std::time::Duration = std::time::Duration::ZERO;

    #[test]
    fn figure_7_simple_atomic_block_wise_put() {
        let (mut asm, mut got) = (Asm::new(), vec![]);
        let b = body(300);
        let run = upload(
            &b,
            Code::PUT,
            3,
            RequestOptions::default(),
            6,
            NO_PAUSE,
            atomic(&mut asm, &mut got, None),
        );
        assert_eq!(
            strs(&run.log),
            [
                "C>S CON PUT 1:0/1/128",
                "S>C ACK 2.31 Continue 1:0/1/128",
                "C>S CON PUT 1:1/1/128",
                "S>C ACK 2.31 Continue 1:1/1/128",
                "C>S CON PUT 1:2/0/128",
                "S>C ACK 2.04 Changed 1:2/0/128",
            ]
        );
        assert_eq!(got, b);
        assert_eq!(run.final_code, Some(Code::CHANGED));
    }

    #[test]
    fn figure_8_simple_stateless_block_wise_put() {
        let b = body(300);
        let mut stored = vec![0u8; 300];
        let run = upload(
            &b,
            Code::PUT,
            3,
            RequestOptions::default(),
            6,
            NO_PAUSE,
            |ep, now, handle, msg| {
                // Stateless: act on each block at once, answer 2.04 with M unset.
                let blk = msg.block1().unwrap().unwrap();
                stored[blk.offset()..blk.offset() + msg.payload().len()]
                    .copy_from_slice(msg.payload());
                ep.respond(now, handle, Code::CHANGED, |b| {
                    b.block1(blk.with_more(false))?;
                    Ok(())
                })
                .unwrap();
            },
        );
        assert_eq!(
            strs(&run.log),
            [
                "C>S CON PUT 1:0/1/128",
                "S>C ACK 2.04 Changed 1:0/0/128",
                "C>S CON PUT 1:1/1/128",
                "S>C ACK 2.04 Changed 1:1/0/128",
                "C>S CON PUT 1:2/0/128",
                "S>C ACK 2.04 Changed 1:2/0/128",
            ]
        );
        assert_eq!(stored, b);
    }

    #[test]
    fn figure_9_atomic_put_with_negotiation() {
        let (mut asm, mut got) = (Asm::new(), vec![]);
        let b = body(220);
        let run = upload(
            &b,
            Code::PUT,
            3,
            RequestOptions::default(),
            1,
            NO_PAUSE,
            atomic(&mut asm, &mut got, None),
        );
        assert_eq!(
            strs(&run.log),
            [
                "C>S CON PUT 1:0/1/128",
                "S>C ACK 2.31 Continue 1:0/1/32",
                "C>S CON PUT 1:4/1/32",
                "S>C ACK 2.31 Continue 1:4/1/32",
                "C>S CON PUT 1:5/1/32",
                "S>C ACK 2.31 Continue 1:5/1/32",
                "C>S CON PUT 1:6/0/32",
                "S>C ACK 2.04 Changed 1:6/0/32",
            ]
        );
        assert_eq!(got, b);
    }

    #[test]
    fn figure_10_atomic_post_with_block_wise_response() {
        let (mut asm, mut got) = (Asm::new(), vec![]);
        let (b, result) = (body(300), body(500));
        let run = upload(
            &b,
            Code::POST,
            3,
            RequestOptions::default(),
            3,
            NO_PAUSE,
            atomic(&mut asm, &mut got, Some(&result)),
        );
        assert_eq!(
            strs(&run.log),
            [
                "C>S CON POST 1:0/1/128",
                "S>C ACK 2.31 Continue 1:0/1/128",
                "C>S CON POST 1:1/1/128",
                "S>C ACK 2.31 Continue 1:1/1/128",
                "C>S CON POST 1:2/0/128",
                "S>C ACK 2.04 Changed 2:0/1/128 1:2/0/128",
                "C>S CON POST 2:1/0/128",
                "S>C ACK 2.04 Changed 2:1/1/128",
                "C>S CON POST 2:2/0/128",
                "S>C ACK 2.04 Changed 2:2/1/128",
                "C>S CON POST 2:3/0/128",
                "S>C ACK 2.04 Changed 2:3/0/128",
            ]
        );
        assert_eq!(got, b);
        assert_eq!(run.response_body, result);
    }

    #[test]
    fn figure_11_post_with_early_negotiation_of_the_response() {
        let (mut asm, mut got) = (Asm::new(), vec![]);
        let (b, result) = (body(300), body(250));
        let opts = RequestOptions {
            block2_szx: Some(2),
            ..Default::default()
        };
        let run = upload(
            &b,
            Code::POST,
            3,
            opts,
            6,
            NO_PAUSE,
            atomic(&mut asm, &mut got, Some(&result)),
        );
        assert_eq!(
            strs(&run.log),
            [
                "C>S CON POST 1:0/1/128",
                "S>C ACK 2.31 Continue 1:0/1/128",
                "C>S CON POST 1:1/1/128",
                "S>C ACK 2.31 Continue 1:1/1/128",
                "C>S CON POST 2:0/0/64 1:2/0/128",
                "S>C ACK 2.04 Changed 2:0/1/64 1:2/0/128",
                "C>S CON POST 2:1/0/64",
                "S>C ACK 2.04 Changed 2:1/1/64",
                "C>S CON POST 2:2/0/64",
                "S>C ACK 2.04 Changed 2:2/1/64",
                "C>S CON POST 2:3/0/64",
                "S>C ACK 2.04 Changed 2:3/0/64",
            ]
        );
        assert_eq!(run.response_body, result);
    }

    #[test]
    fn body_over_the_servers_limit_ends_with_4_13_and_size1() {
        let mut asm: Block1Assembler<u8, 2, 256> = Block1Assembler::new();
        let b = body(1000);
        let run = upload(
            &b,
            Code::PUT,
            3,
            RequestOptions::default(),
            6,
            NO_PAUSE,
            |ep, now, handle, msg| {
                let mut local = Block1Assembler::new();
                std::mem::swap(&mut asm, &mut local);
                let done = ep
                    .assemble_block1(now, handle, msg, &mut local)
                    .unwrap()
                    .is_some();
                std::mem::swap(&mut asm, &mut local);
                assert!(!done);
            },
        );
        assert_eq!(run.final_code, Some(Code::REQUEST_ENTITY_TOO_LARGE));
        assert_eq!(run.final_size1, Some(256));
    }

    #[test]
    fn assembly_dropped_after_exchange_lifetime_gives_4_08() {
        let (mut asm, mut got) = (Asm::new(), vec![]);
        let b = body(300);
        let pause = coap_proto::TransmissionParams::RFC7252.exchange_lifetime()
            + std::time::Duration::from_secs(1);
        let run = upload(
            &b,
            Code::PUT,
            3,
            RequestOptions::default(),
            6,
            pause,
            atomic(&mut asm, &mut got, None),
        );
        assert_eq!(run.final_code, Some(Code::REQUEST_ENTITY_INCOMPLETE));
        assert!(got.is_empty());
    }

    #[test]
    fn uploads_carry_a_request_tag() {
        let (mut asm, mut got) = (Asm::new(), vec![]);
        let b = body(200);
        let tags = std::cell::RefCell::new(vec![]);
        let mut inner = atomic(&mut asm, &mut got, None);
        upload(
            &b,
            Code::PUT,
            3,
            RequestOptions::default(),
            6,
            NO_PAUSE,
            |ep, now, handle, msg| {
                tags.borrow_mut()
                    .push(msg.request_tags().next().map(|t| t.to_vec()));
                inner(ep, now, handle, msg);
            },
        );
        let tags = tags.into_inner();
        assert!(
            tags.iter().all(|t| t.is_some() && *t == tags[0]),
            "{tags:?}"
        );
        let _ = Block::MAX_NUM;
    }
}

mod helpers_and_misbehaviour {
    use super::*;
    use coap_proto::Event;
    use coap_proto::block::{Block1Assembler, BodyBuffer, BufferTooSmall};
    use coap_proto::wire::Block;
    use common::msg;

    #[test]
    fn slice_at_an_offset_starts_at_the_block_that_holds_it() {
        let opts = RequestOptions {
            block2_offset: 700,
            block2_szx: Some(3),
            ..Default::default()
        };
        let run = transfer(1000, 6, opts, &[]);
        // 128-byte blocks: byte 700 is in block 5.
        assert_eq!(run.log[0], "C>S CON GET 2:5/0/128");
        assert_eq!(run.log.len(), 6, "blocks 5, 6 and 7 only");
    }

    #[test]
    fn download_into_a_buffer_reports_the_size_needed() {
        let body: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let mut client = Ep::new(Config {
            seed: 1,
            ..Config::default()
        })
        .unwrap();
        let mut server = Ep::new(Config {
            seed: 2,
            max_block_szx: 3,
            ..Config::default()
        })
        .unwrap();
        let now = Instant::ZERO;
        client
            .request(now, SERVER, Code::GET, &RequestOptions::default(), |_| {
                Ok(())
            })
            .unwrap();
        let mut small = [0u8; 200];
        let mut buf = BodyBuffer::new(&mut small);
        let Output::Transmit(t) = client.poll_output(now) else {
            panic!()
        };
        let req = t.data.to_vec();
        let Some(Incoming::Request { handle, message }) = server.handle_datagram(now, CLIENT, &req)
        else {
            panic!()
        };
        server
            .respond_block2(now, handle, &message, Code::CONTENT, &body, |_| Ok(()))
            .unwrap();
        let Output::Transmit(t) = server.poll_output(now) else {
            panic!()
        };
        let resp = t.data.to_vec();
        let Some(Incoming::Response {
            message,
            block: Some(r),
            ..
        }) = client.handle_datagram(now, SERVER, &resp)
        else {
            panic!()
        };
        // Size2 arrives with the first block: the shortfall is known at once.
        assert_eq!(
            buf.put(&r, message.payload()),
            Err(BufferTooSmall { needed: 300 })
        );
    }

    #[test]
    fn server_sending_more_forever_is_stopped_by_block2_numbering() {
        // M=1 on every block: the client follows until NUM would pass 2^20 - 1, then
        // ends with BlockFailed instead of looping. 16-byte blocks keep it quick.
        let mut client = Ep::new(Config {
            seed: 1,
            ..Config::default()
        })
        .unwrap();
        let now = Instant::ZERO;
        let opts = RequestOptions {
            block2_szx: Some(0),
            ..Default::default()
        };
        client
            .request(now, SERVER, Code::GET, &opts, |_| Ok(()))
            .unwrap();
        let mut events = vec![];
        let mut n = 0u32;
        loop {
            let mut req = None;
            loop {
                match client.poll_output(now) {
                    Output::Transmit(t) => req = Some(t.data.to_vec()),
                    Output::Event(e) => events.push(e),
                    Output::Timeout(_) => break,
                }
            }
            let Some(req) = req else { break };
            let r = parse(&req);
            let resp = msg(Type::Ack, Code::CONTENT, r.message_id(), r.token(), |b| {
                b.block2(Block::new(n, true, 0).unwrap()).unwrap();
                b.payload(&[0xaa; 16]).unwrap();
            });
            client.handle_datagram(now, SERVER, &resp);
            n += 1;
            assert!(n <= Block::MAX_NUM + 1, "must stop");
        }
        assert_eq!(n, Block::MAX_NUM + 1);
        assert!(
            matches!(
                events[..],
                [Event::BlockFailed(
                    _,
                    coap_proto::block::DownloadError::TooLarge
                )]
            ),
            "{events:?}"
        );
        assert_eq!(client.exchanges_in_flight(), 0);
    }

    #[test]
    fn client_block1_out_of_order_gets_4_08() {
        let mut server = Ep::new(Config {
            seed: 2,
            ..Config::default()
        })
        .unwrap();
        let mut asm: Block1Assembler<u8, 2, 1024> = Block1Assembler::new();
        let now = Instant::ZERO;
        let mut answer = |mid: u16, num: u32| {
            let req = msg(Type::Con, Code::PUT, mid, &[1], |b| {
                b.uri_path("x").unwrap();
                b.block1(Block::new(num, true, 0).unwrap()).unwrap();
                b.payload(&[7; 16]).unwrap();
            });
            let Some(Incoming::Request { handle, message }) =
                server.handle_datagram(now, CLIENT, &req)
            else {
                panic!()
            };
            assert!(
                server
                    .assemble_block1(now, handle, &message, &mut asm)
                    .unwrap()
                    .is_none()
            );
            let Output::Transmit(t) = server.poll_output(now) else {
                panic!()
            };
            parse(t.data).code()
        };
        assert_eq!(answer(1, 0), Code::CONTINUE);
        assert_eq!(
            answer(2, 2),
            Code::REQUEST_ENTITY_INCOMPLETE,
            "block 1 skipped"
        );
        assert_eq!(answer(3, 1), Code::CONTINUE, "the right block still fits");
    }
}

#[test]
fn early_block2_with_a_request_payload() {
    // Found by the exchange example: the endpoint's Block2 used to be added after the
    // caller's payload, which the builder refuses.
    let mut client = Ep::new(Config {
        seed: 1,
        ..Config::default()
    })
    .unwrap();
    let opts = RequestOptions {
        block2_szx: Some(5),
        ..Default::default()
    };
    client
        .request(Instant::ZERO, SERVER, Code::FETCH, &opts, |b| {
            b.uri_path("/q")?.payload(b"query")?;
            Ok(())
        })
        .unwrap();
    let Output::Transmit(t) = client.poll_output(Instant::ZERO) else {
        panic!()
    };
    let first = t.data.to_vec();
    let m = parse(&first);
    assert_eq!(
        m.block2().unwrap(),
        coap_proto::wire::Block::new(0, false, 5)
    );
    assert_eq!(m.payload(), b"query");
    // The follow-up for the next block carries the same body (FETCH, RFC 7959 §2.4).
    let resp = common::msg(Type::Ack, Code::CONTENT, m.message_id(), m.token(), |b| {
        b.block2(coap_proto::wire::Block::new(0, true, 5).unwrap())
            .unwrap();
        b.payload(&[1; 512]).unwrap();
    });
    assert!(
        client
            .handle_datagram(Instant::ZERO, SERVER, &resp)
            .is_some()
    );
    let Output::Transmit(t) = client.poll_output(Instant::ZERO) else {
        panic!()
    };
    let next = parse(t.data);
    assert_eq!(
        next.block2().unwrap(),
        coap_proto::wire::Block::new(1, false, 5)
    );
    assert!(next.uri_path().matches("/q"));
    assert_eq!(next.payload(), b"query");
}

#[test]
fn follow_up_keeps_the_request_body_when_its_header_grows() {
    // No Block2 in the first request, one in the follow-up: the header grows, so the
    // kept body has to move within the stored request.
    let mut client = Ep::new(Config {
        seed: 4,
        ..Config::default()
    })
    .unwrap();
    client
        .request(
            Instant::ZERO,
            SERVER,
            Code::FETCH,
            &RequestOptions::default(),
            |b| {
                b.uri_path("/q")?.payload(b"a query body")?;
                Ok(())
            },
        )
        .unwrap();
    let Output::Transmit(t) = client.poll_output(Instant::ZERO) else {
        panic!()
    };
    let first = t.data.to_vec();
    let m = parse(&first);
    assert_eq!(m.block2().unwrap(), None);
    let resp = common::msg(Type::Ack, Code::CONTENT, m.message_id(), m.token(), |b| {
        b.block2(coap_proto::wire::Block::new(0, true, 2).unwrap())
            .unwrap();
        b.payload(&[1; 64]).unwrap();
    });
    assert!(
        client
            .handle_datagram(Instant::ZERO, SERVER, &resp)
            .is_some()
    );
    let Output::Transmit(t) = client.poll_output(Instant::ZERO) else {
        panic!()
    };
    let next = parse(t.data);
    assert_eq!(
        next.block2().unwrap(),
        coap_proto::wire::Block::new(1, false, 2)
    );
    assert!(next.uri_path().matches("/q"));
    assert_eq!(next.payload(), b"a query body");
}
