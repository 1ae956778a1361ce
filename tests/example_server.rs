//! The `coap-server` example keeps its memory and threads bounded: created resources
//! are capped by `-d`, and `/async` requests wait on one timer thread, not a thread each.
#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use coap_proto::net::blocking::Client;
use coap_proto::net::{Request, tokio as adapter};
use coap_proto::wire::Code;
use common::example::{example, start_coap_server as start, start_example_server};

/// Threads of a process, from /proc (Linux).
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[test]
fn both_servers_take_libcoaps_flags_and_print_help() {
    for name in ["coap-server", "tokio_server"] {
        let out = std::process::Command::new(example(name))
            .arg("-h")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name} -h");
        for flag in ["-A ADDRESS", "-p PORT", "-d MAX", "-v N", "-h"] {
            assert!(help.contains(flag), "{name} -h lacks {flag}: {help}");
        }
        let out = std::process::Command::new(example(name))
            .arg("-x")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} refuses an unknown flag");
    }
}

#[test]
fn created_resources_are_capped_by_d() {
    for name in ["coap-server", "tokio_server"] {
        created_resources_are_capped_by_d_in(name);
    }
}

fn created_resources_are_capped_by_d_in(name: &str) {
    let server = start_example_server(name, &["-d", "3"]);
    let mut c = Client::connect(server.addr).unwrap();
    for i in 0..3 {
        let r = c.put(&format!("/new{i}"), b"x").unwrap();
        assert_eq!(r.code, Code::CREATED);
    }
    let r = c.put("/new3", b"x").unwrap();
    assert_eq!(r.code, Code::NOT_ACCEPTABLE);
    // Changing one that exists is fine; deleting one makes room.
    assert_eq!(c.put("/new0", b"y").unwrap().code, Code::CHANGED);
    assert_eq!(c.delete("/new1").unwrap().code, Code::DELETED);
    assert_eq!(c.put("/new3", b"x").unwrap().code, Code::CREATED);
}

#[tokio::test]
async fn async_requests_share_one_timer_thread() {
    let server = start(&[]);
    let pid = server.child.id();
    let client = adapter::Client::connect(server.addr).await.unwrap();
    // Settle: the first request starts the timer thread.
    client.get("/").await.unwrap();
    let before = threads(pid);
    let start = Instant::now();
    let waiting: Vec<_> = (0..12)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.request(Request::get("/async").query("1")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = threads(pid);
    for w in waiting {
        let r = w.await.unwrap().unwrap();
        assert_eq!(r.payload_str(), Some("done"));
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        during <= before + 1,
        "{before} threads before, {during} with 12 waiting"
    );
}

#[test]
fn conditional_puts_get_4_12_when_their_condition_fails() {
    use coap_proto::wire::OptionNumber;
    for name in ["coap-server", "tokio_server"] {
        let server = start_example_server(name, &[]);
        let mut c = Client::connect(server.addr).unwrap();
        // If-None-Match: create only — /example_data exists.
        let create_only = Request::put("/example_data")
            .option(OptionNumber::IF_NONE_MATCH, [])
            .payload("new");
        assert_eq!(
            c.request(&create_only).unwrap().code,
            Code::PRECONDITION_FAILED
        );
        // If-Match with an ETag it does not have.
        let stale = Request::put("/example_data")
            .option(OptionNumber::IF_MATCH, *b"nope")
            .payload("new");
        assert_eq!(c.request(&stale).unwrap().code, Code::PRECONDITION_FAILED);
        // With the ETag a GET gave: changed.
        let etag = c.get("/example_data").unwrap().etag.expect("an ETag");
        let current = Request::put("/example_data")
            .option(OptionNumber::IF_MATCH, etag)
            .payload("new");
        assert_eq!(c.request(&current).unwrap().code, Code::CHANGED, "{name}");
        assert_eq!(c.get("/example_data").unwrap().payload, b"new");
        // If-None-Match creates where nothing is.
        let fresh = Request::put("/fresh")
            .option(OptionNumber::IF_NONE_MATCH, [])
            .payload("x");
        assert_eq!(c.request(&fresh).unwrap().code, Code::CREATED);
    }
}

#[test]
fn the_example_servers_answer_the_rfc_7252_rows_of_issue_12() {
    use coap_proto::wire::{ContentFormat, OptionNumber};
    for name in ["coap-server", "tokio_server"] {
        let server = start_example_server(name, &[]);
        let mut c = Client::connect(server.addr).unwrap();
        let ask = |c: &mut Client, r: Request| c.request(&r).unwrap();
        // Two Uri-Host: 4.02 with its diagnostic payload.
        let r = ask(
            &mut c,
            Request::get("/")
                .option(OptionNumber::URI_HOST, *b"a")
                .option(OptionNumber::URI_HOST, *b"b"),
        );
        assert_eq!(
            (r.code, r.payload_str()),
            (Code::BAD_OPTION, Some("Bad Option")),
            "{name}"
        );
        // Proxy-Uri to a server that is not a proxy.
        let r = ask(
            &mut c,
            Request::get("/").option(OptionNumber::PROXY_URI, "coap://h/"),
        );
        assert_eq!(r.code, Code::PROXYING_NOT_SUPPORTED, "{name}");
        // Accept: 65000 for a text/plain resource.
        let r = ask(&mut c, Request::get("/").accept(ContentFormat(65000)));
        assert_eq!(r.code, Code::NOT_ACCEPTABLE, "{name}");
        assert_eq!(
            ask(&mut c, Request::get("/").accept(ContentFormat::TEXT_PLAIN)).code,
            Code::CONTENT
        );
    }
}

/// One request of the amplification survey: what it is, and its bytes.
struct Probe {
    name: String,
    bytes: Vec<u8>,
}

/// Every kind of request the example servers answer, as an attacker with a spoofed
/// (never verified) source would pick them: each resource and method, the error paths,
/// a Block2 follow-up, an Observe registration, and a resource a verified client filled
/// with 1,000 bytes. Each with a token of 0, 1 and 8 bytes, CON and NON.
fn amplification_probes() -> Vec<Probe> {
    use coap_proto::wire::{Block, MessageBuilder, NoResponse, OptionNumber, Type};
    type Build = Box<dyn Fn(&mut MessageBuilder<'_>)>;
    let path = |p: &'static str| -> Build {
        Box::new(move |b| {
            b.uri_path(p).unwrap();
        })
    };
    let kinds: Vec<(&str, Code, Build)> = vec![
        ("GET /", Code::GET, Box::new(|_| {})),
        ("GET /time", Code::GET, path("/time")),
        ("GET /example_data", Code::GET, path("/example_data")),
        (
            "GET /example_data, block 1",
            Code::GET,
            Box::new(|b| {
                b.uri_path("/example_data").unwrap();
                b.block2(Block::new(1, false, 6).unwrap()).unwrap();
            }),
        ),
        (
            "GET /.well-known/core",
            Code::GET,
            path("/.well-known/core"),
        ),
        (
            "GET /.well-known/core?rt=*",
            Code::GET,
            Box::new(|b| {
                b.uri_path("/.well-known/core").unwrap();
                b.option(OptionNumber::URI_QUERY, b"rt=*").unwrap();
            }),
        ),
        ("GET /filled (1,000 bytes)", Code::GET, path("/filled")),
        (
            "GET /async?1 (separate)",
            Code::GET,
            Box::new(|b| {
                b.uri_path("/async").unwrap();
                b.option(OptionNumber::URI_QUERY, b"1").unwrap();
            }),
        ),
        (
            "GET /time, Observe",
            Code::GET,
            Box::new(|b| {
                b.observe(0).unwrap();
                b.uri_path("/time").unwrap();
            }),
        ),
        ("GET /nothing (4.04)", Code::GET, path("/nothing")),
        (
            "POST /p",
            Code::POST,
            Box::new(|b| {
                b.uri_path("/p").unwrap();
                b.payload(b"v").unwrap();
            }),
        ),
        (
            "PUT /q",
            Code::PUT,
            Box::new(|b| {
                b.uri_path("/q").unwrap();
                b.payload(b"v").unwrap();
            }),
        ),
        ("DELETE /q", Code::DELETE, path("/q")),
        ("FETCH / (4.05)", Code::FETCH, Box::new(|_| {})),
        (
            "GET / with 2 Uri-Host (4.02)",
            Code::GET,
            Box::new(|b| {
                b.option(OptionNumber::URI_HOST, b"a").unwrap();
                b.option(OptionNumber::URI_HOST, b"b").unwrap();
            }),
        ),
        (
            "GET with Proxy-Uri (5.05)",
            Code::GET,
            Box::new(|b| {
                b.option(OptionNumber::PROXY_URI, b"coap://a/").unwrap();
            }),
        ),
        (
            "GET / Accept 65000 (4.06)",
            Code::GET,
            Box::new(|b| {
                b.option(OptionNumber::ACCEPT, &[0xfd, 0xe8]).unwrap();
            }),
        ),
        (
            "GET /example_data, No-Response 2.xx",
            Code::GET,
            Box::new(|b| {
                b.uri_path("/example_data").unwrap();
                b.no_response(NoResponse(0x02)).unwrap();
            }),
        ),
    ];
    let mut probes = Vec::new();
    let mut mid = 0x1000u16;
    for (name, code, build) in &kinds {
        for token in [&[][..], &[7], &[1, 2, 3, 4, 5, 6, 7, 8]] {
            for ty in [Type::Con, Type::Non] {
                mid += 1;
                let mut buf = [0u8; 128];
                let mut b = MessageBuilder::new(&mut buf, ty, *code, mid).unwrap();
                b.token(token).unwrap();
                build(&mut b);
                probes.push(Probe {
                    name: format!("{name} [{ty:?}, token {}]", token.len()),
                    bytes: b.finish().to_vec(),
                });
            }
        }
    }
    probes
}

/// What the server sent back for a probe, from a socket of its own (so that nothing
/// meant for another probe is counted): every datagram until the answer with a code, a
/// RST, or 1.5 s of silence. CON answers are acknowledged, so each counts once.
fn answers(to: std::net::SocketAddr, probe: &[u8]) -> Vec<Vec<u8>> {
    use coap_proto::wire::{Message, MessageBuilder, Type};
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s.send_to(probe, to).unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        let m = Message::parse(&buf[..n]).unwrap();
        got.push(buf[..n].to_vec());
        if m.ty() == Type::Con {
            let mut ack = [0u8; 4];
            let b = MessageBuilder::new(&mut ack, Type::Ack, Code::EMPTY, m.message_id()).unwrap();
            s.send_to(b.finish(), to).unwrap();
        }
        if m.code() != Code::EMPTY || m.ty() == Type::Rst {
            break;
        }
    }
    got
}

/// The bytes of IPv4 and UDP header around every datagram.
const IP_UDP: usize = 28;

#[test]
fn amplification_toward_an_unverified_peer_is_at_most_three() {
    // RFC 9175 §2.4 item 3, RFC 7252 §11.3: the acceptance measurement of issue 12.
    // Everything the example servers send in answer to one request from an address
    // that never proved itself, as a multiple of that request's size.
    let survey = |name: &'static str| {
        let server = start_example_server(name, &[]);
        // A verified client fills /filled with 1,000 bytes (the 173x case of the issue).
        let mut c = Client::connect(server.addr).unwrap();
        assert_eq!(c.put("/filled", &[b'f'; 1000]).unwrap().code, Code::CREATED);
        let mut worst: Vec<(String, f64, usize, usize, Code)> = Vec::new();
        for probe in amplification_probes() {
            let got = answers(server.addr, &probe.bytes);
            let bytes: usize = got.iter().map(Vec::len).sum();
            let code = got.last().map_or(Code::EMPTY, |g| {
                coap_proto::wire::Message::parse(g).unwrap().code()
            });
            // Counted as the servers count (`Amplification::RFC9175`): each datagram
            // with the 28 bytes of IPv4 and UDP header it travels in.
            let wire = bytes + IP_UDP * got.len();
            let factor = wire as f64 / (probe.bytes.len() + IP_UDP) as f64;
            assert!(
                factor <= 3.0,
                "{name}: {}: {bytes} bytes in {} datagrams ({code}) for {} ({factor:.2}x)",
                probe.name,
                got.len(),
                probe.bytes.len()
            );
            worst.push((probe.name, factor, probe.bytes.len(), bytes, code));
        }
        worst.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut report = format!(
            "{name}: amplification toward an unverified peer over the wire (CoAP bytes alone \
             in brackets), worst first\n"
        );
        for (probe, factor, req, resp, code) in &worst {
            let coap = *resp as f64 / *req as f64;
            report += &format!(
                "  {factor:.2}x ({coap:.2}x)  {req:>3} -> {resp:>3} bytes  {code}  {probe}\n"
            );
        }
        report
    };
    // The two servers at once: each probe waits for its answers.
    let tokio = std::thread::spawn(move || survey("tokio_server"));
    let blocking = survey("coap-server");
    eprint!("{blocking}{}", tokio.join().unwrap());
}

#[test]
fn our_coap_client_answers_the_example_servers_challenges_unnoticed() {
    // RFC 9175 §2.3 end to end with the two examples: every first request of a new
    // `coap-client` process comes from an unverified port.
    let server = start_example_server("coap-server", &[]);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(example("coap-client"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "coap-client {args:?}: {out:?}");
        out.stdout
    };
    let base = format!("coap://{}", server.addr);
    let body = run(&[&format!("{base}/example_data")]);
    assert_eq!(body.len(), 1500 + 1, "the whole body and a newline");
    assert!(body[..1500].iter().all(u8::is_ascii_lowercase));
    run(&["-m", "post", "-e", "v", &format!("{base}/posted")]);
    assert_eq!(run(&[&format!("{base}/posted")]), b"v\n");
    let observed = run(&["-s", "2", &format!("{base}/time")]);
    assert!(String::from_utf8_lossy(&observed).matches("UTC").count() >= 2);
}
