//! RFC 7959 §3.1, Figures 2–6, replayed between two endpoints: the Block2 option of
//! every request and response, as the figures show them (`num/m/size`), and the body
//! the client reassembles.

mod common;

use coap_proto::wire::{Code, Type};
use coap_proto::{Config, Endpoint, Incoming, Instant, Output, RequestOptions};
use common::{CLIENT, SERVER, parse};

type Ep = Endpoint<u8, 8, 16, 1152, 4608>;

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
    let code = if m.code().is_request() {
        String::from("GET")
    } else {
        m.code().to_string()
    };
    format!("{dir} {} {code}{b2}", m.ty())
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
