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
        assert_eq!(r.payload_str(), Some("Async Complete!"));
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
