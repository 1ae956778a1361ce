//! Interop with real CoAP implementations over 127.0.0.1: libcoap's
//! `coap-client-notls` / `coap-server-notls` (Debian `libcoap3-bin`) and aiocoap (pip).
//!
//! Matrix: {our client × libcoap server, our client × aiocoap server, libcoap client ×
//! our server, aiocoap client × our server} × {GET, NON, PUT/POST/DELETE, 5000-byte
//! Block2, 5000-byte Block1, separate response}. With `CI=true` a missing peer fails
//! the test; elsewhere the test prints that it was skipped.
#![cfg(feature = "std")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coap_proto::net::Request;
use coap_proto::net::blocking::Client;
use coap_proto::wire::Code;
use common::example::example;

fn big() -> Vec<u8> {
    (0..5000).map(|i| (i * 7 % 251) as u8).collect()
}

/// Whether `program` runs; if not, fails under CI and says so loudly elsewhere.
fn available(what: &str, program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is missing (CI=true): install it as .ci/run does"
        );
        eprintln!("\n*** SKIPPED: {what} is not installed; interop with it was NOT tested ***\n");
    }
    ok
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Our `coap-server` example on a free port, logging each request to stderr.
fn our_server() -> (Peer, u16, BufReader<std::process::ChildStderr>) {
    let port = free_port();
    let mut child = Command::new(example("coap-server"))
        .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-v"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    (Peer(child), port, log)
}

/// Waits until a CoAP server answers a ping on `port` (at most 10 s).
fn wait_for_server(port: u16) {
    let start = Instant::now();
    let mut c = Client::connect(("127.0.0.1", port)).unwrap();
    while c.request(&Request::get("/").params(fast())).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server on {port} never answered"
        );
    }
}

fn fast() -> coap_proto::TransmissionParams {
    coap_proto::TransmissionParams {
        ack_timeout: Duration::from_millis(200),
        max_retransmit: 2,
        ..coap_proto::TransmissionParams::RFC7252
    }
}

/// The scenarios with our client against a server on `port` holding resource `path`.
fn our_client_scenarios(port: u16, path: &str, created: Code) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut c = Client::connect(addr).unwrap();
    let r = c.get("/").unwrap();
    assert!(r.is_success(), "GET /: {r}");
    let r = c.request(&Request::get("/").non_confirmable()).unwrap();
    assert!(r.is_success(), "NON GET /: {r}");
    assert_eq!(c.put(path, b"one").unwrap().code, created, "PUT create");
    assert_eq!(
        c.put(path, b"two").unwrap().code,
        Code::CHANGED,
        "PUT again"
    );
    assert_eq!(c.get(path).unwrap().payload, b"two");
    assert!(c.post(path, b"three").unwrap().is_success(), "POST");
    assert_eq!(
        c.put(path, &big()).unwrap().code,
        Code::CHANGED,
        "Block1 upload of 5000 bytes"
    );
    let r = c.get(path).unwrap();
    assert_eq!(
        (r.code, r.payload.len(), r.payload == big()),
        (Code::CONTENT, 5000, true),
        "Block2 download"
    );
    assert_eq!(c.delete(path).unwrap().code, Code::DELETED, "DELETE");
    assert_eq!(
        c.get(path).unwrap().code,
        Code::NOT_FOUND,
        "GET after DELETE"
    );
    let start = Instant::now();
    let r = c
        .get_url(&format!("coap://127.0.0.1:{port}/async?1"))
        .unwrap();
    assert!(
        r.is_success() && start.elapsed() >= Duration::from_millis(900),
        "separate response: {r}"
    );
}

#[test]
fn our_client_against_libcoap_server() {
    if !available(
        "libcoap (coap-server-notls)",
        "which",
        &["coap-server-notls"],
    ) {
        return;
    }
    let port = free_port();
    let _server = Peer(
        Command::new("coap-server-notls")
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-d", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_server(port);
    our_client_scenarios(port, "/interop", Code::CREATED);
}

#[test]
fn our_client_against_aiocoap_server() {
    if !available("aiocoap (pip)", "python3", &["-c", "import aiocoap"]) {
        return;
    }
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiocoap_peer.py");
    let mut child = Command::new("python3")
        .args([script, "server", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let _server = Peer(child);
    assert_eq!(ready.trim(), "ready");
    // aiocoap's /store starts with the 5000-byte body.
    let mut c = Client::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(c.get("/store").unwrap().payload, big(), "Block2 download");
    assert_eq!(
        c.get_non("/hello").unwrap().payload,
        b"hello from aiocoap",
        "NON"
    );
    our_client_scenarios_aiocoap(&mut c, port);
}

fn our_client_scenarios_aiocoap(c: &mut Client, port: u16) {
    assert_eq!(c.get("/hello").unwrap().payload, b"hello from aiocoap");
    assert_eq!(c.put("/store", b"two").unwrap().code, Code::CHANGED);
    assert_eq!(c.post("/store", b"three").unwrap().code, Code::CHANGED);
    assert_eq!(c.get("/store").unwrap().payload, b"three");
    assert_eq!(
        c.put("/store", &big()).unwrap().code,
        Code::CHANGED,
        "Block1 upload"
    );
    assert_eq!(c.get("/store").unwrap().payload, big());
    assert_eq!(c.delete("/store").unwrap().code, Code::DELETED);
    assert_eq!(c.get("/store").unwrap().code, Code::NOT_FOUND);
    let start = Instant::now();
    let r = c
        .get_url(&format!("coap://127.0.0.1:{port}/async?1"))
        .unwrap();
    assert_eq!(r.payload, b"Async Complete!");
    assert!(start.elapsed() >= Duration::from_millis(900));
}

/// Runs libcoap's client; returns its stdout.
fn libcoap_client(args: &[&str]) -> Vec<u8> {
    let out = Command::new("coap-client-notls")
        .arg("-B")
        .arg("10")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "coap-client-notls {args:?}: {out:?}");
    out.stdout
}

/// The next request our server logged.
fn logged(log: &mut BufReader<std::process::ChildStderr>) -> String {
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn libcoap_client_against_our_server() {
    if !available(
        "libcoap (coap-client-notls)",
        "which",
        &["coap-client-notls"],
    ) {
        return;
    }
    let (_server, port, mut log) = our_server();
    let base = format!("coap://127.0.0.1:{port}");
    let out = libcoap_client(&[&format!("{base}/")]);
    assert!(String::from_utf8_lossy(&out).contains("coap-proto"));
    let out = libcoap_client(&["-N", &format!("{base}/time")]);
    assert!(
        String::from_utf8_lossy(&out).contains("UTC"),
        "NON GET /time"
    );
    libcoap_client(&["-m", "put", "-e", "one", &format!("{base}/lc")]);
    assert_eq!(logged(&mut log), "PUT /lc (3 bytes) -> 2.01 Created");
    libcoap_client(&["-m", "post", "-e", "two", &format!("{base}/lc")]);
    assert_eq!(logged(&mut log), "POST /lc (3 bytes) -> 2.04 Changed");
    let file = std::env::temp_dir().join(format!("coap-proto-interop-{port}.bin"));
    std::fs::write(&file, big()).unwrap();
    libcoap_client(&[
        "-m",
        "put",
        "-f",
        file.to_str().unwrap(),
        &format!("{base}/lc"),
    ]);
    assert_eq!(
        logged(&mut log),
        "PUT /lc (5000 bytes) -> 2.04 Changed",
        "Block1 upload"
    );
    libcoap_client(&["-o", file.to_str().unwrap(), &format!("{base}/lc")]);
    let mut got = Vec::new();
    std::fs::File::open(&file)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, big(), "Block2 download");
    let _ = std::fs::remove_file(&file);
    libcoap_client(&["-m", "delete", &format!("{base}/lc")]);
    let start = Instant::now();
    let out = libcoap_client(&[&format!("{base}/async?1")]);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "Async Complete!");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "separate response"
    );
    let mut c = Client::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(
        c.get("/lc").unwrap().code,
        Code::NOT_FOUND,
        "after libcoap's DELETE"
    );
}

#[test]
fn aiocoap_client_against_our_server() {
    if !available("aiocoap (pip)", "python3", &["-c", "import aiocoap"]) {
        return;
    }
    let (_server, port, _log) = our_server();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiocoap_peer.py");
    let out = Command::new("python3")
        .args([script, "client", &format!("coap://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(
        out.status.success() && !report.contains("FAIL"),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.matches("PASS").count(), 11);
}
