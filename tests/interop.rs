//! Interop with real CoAP implementations over 127.0.0.1: libcoap's
//! `coap-client-notls` / `coap-server-notls` (Debian `libcoap3-bin`) and aiocoap (pip).
//!
//! Matrix: {our client × libcoap server, our client × aiocoap server, libcoap client ×
//! our servers (`coap-server` and `tokio_server`), aiocoap client × our server} × {GET,
//! NON, PUT/POST/DELETE, 5000-byte Block2, 5000-byte Block1, separate response}; and
//! our `coap-client` example next to libcoap's, flag by flag, against libcoap's
//! server. With `CI=true` a missing peer fails the test; elsewhere the test prints that
//! it was skipped.
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

/// A server's stderr, line by line, read on a thread so that every wait is bounded.
struct Log(std::sync::mpsc::Receiver<String>);

impl Log {
    fn new(stderr: std::process::ChildStderr) -> Log {
        Log::lines_of(stderr)
    }

    fn new_out(stdout: std::process::ChildStdout) -> Log {
        Log::lines_of(stdout)
    }

    fn lines_of(from: impl Read + Send + 'static) -> Log {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Log(rx)
    }

    /// The next line, waiting at most 10 s.
    fn next(&mut self) -> String {
        self.0
            .recv_timeout(Duration::from_secs(10))
            .expect("the server logged nothing for 10 s")
            .trim()
            .to_string()
    }

    /// Every line logged so far.
    fn drain(&mut self) -> Vec<String> {
        self.0.try_iter().collect()
    }
}

/// Our `coap-server` example (or `tokio_server`, which takes the same flags and serves
/// the same resources) on a free port, logging each request to stderr.
fn our_server(name: &str) -> (Peer, u16, Log) {
    let port = free_port();
    let mut child = Command::new(example(name))
        .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-v", "5"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = Log::new(child.stderr.take().unwrap());
    let line = log.next();
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
    let (_server, port) = libcoap_server();
    our_client_scenarios(port, "/interop", Code::CREATED);
}

#[test]
fn our_client_against_aiocoap_server() {
    if !available("aiocoap (pip)", "python3", &["-c", "import aiocoap"]) {
        return;
    }
    let (_server, port) = aiocoap_server();
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

/// The next request our server logged (its `INFO` lines, such as Echo challenges,
/// skipped; within 200 lines).
fn logged(log: &mut Log) -> String {
    for _ in 0..200 {
        let line = log.next();
        if !line.starts_with("INFO") {
            return line;
        }
    }
    panic!("no request logged in 200 lines");
}

#[test]
fn libcoap_client_gets_large_answers_within_the_factor_without_echo() {
    // RFC 9175 §2.4 against libcoap 4.3, our servers with their defaults (mitigation
    // on): a 1,500-byte GET, a POST and an Observe registration from an unverified
    // client are served within 3 times their requests (smaller blocks where needed),
    // run once, and never challenged.
    if !available(
        "libcoap (coap-client-notls)",
        "which",
        &["coap-client-notls"],
    ) {
        return;
    }
    for name in ["coap-server", "tokio_server"] {
        let (_server, port, mut log) = our_server(name);
        let base = format!("coap://127.0.0.1:{port}");
        let out = libcoap_client(&[&format!("{base}/example_data")]);
        assert_eq!(
            out.len(),
            1500 + 1,
            "{name}: the whole body, and libcoap's newline"
        );
        let out = libcoap_client(&["-m", "post", "-e", "x", &format!("{base}/lc-echo")]);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        let posted = log_line(&mut log, "POST /lc-echo");
        assert_eq!(
            posted, "POST /lc-echo (1 bytes) -> 2.01 Created",
            "run once"
        );
        let out = libcoap_client(&["-s", "2", &format!("{base}/time")]);
        assert!(String::from_utf8_lossy(&out).contains("UTC"), "observed");
        std::thread::sleep(Duration::from_millis(200));
        let challenges: Vec<String> = log
            .drain()
            .into_iter()
            .filter(|l| l.contains("4.01 and Echo"))
            .collect();
        assert!(challenges.is_empty(), "{name}: {challenges:?}");
    }
}

/// The next line of our server's log that contains `what` (within 200 lines).
fn log_line(log: &mut Log, what: &str) -> String {
    for _ in 0..200 {
        let line = log.next();
        if line.contains(what) {
            return line;
        }
    }
    panic!("no log line with {what:?}");
}

#[test]
fn libcoap_client_against_our_servers() {
    if !available(
        "libcoap (coap-client-notls)",
        "which",
        &["coap-client-notls"],
    ) {
        return;
    }
    for name in ["coap-server", "tokio_server"] {
        libcoap_client_against(name);
    }
}

fn libcoap_client_against(name: &str) {
    let (_server, port, mut log) = our_server(name);
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
    assert_eq!(String::from_utf8_lossy(&out).trim(), "done");
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
fn aiocoap_client_with_its_defaults_against_both_our_servers_with_theirs() {
    // Amplification mitigation is on in both servers by default (RFC 9175 §2.4), and
    // aiocoap 0.4.17 does not answer a 4.01 with Echo: every scenario must be served
    // within the factor without one.
    if !available("aiocoap (pip)", "python3", &["-c", "import aiocoap"]) {
        return;
    }
    for name in ["coap-server", "tokio_server"] {
        let (_server, port, _log) = our_server(name);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiocoap_peer.py");
        let out = Command::new("python3")
            .args([script, "client", &format!("coap://127.0.0.1:{port}")])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        eprintln!("{name}:\n{report}");
        assert!(
            out.status.success() && !report.contains("FAIL"),
            "{name}: {report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            report.contains("ECHO 0"),
            "{name}: no request was challenged"
        );
        // And aiocoap's command-line client, as a user would type it.
        if available("aiocoap-client", "aiocoap-client", &["--help"]) {
            let example_data: String = (0..1500u32)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            for (path, expect) in [
                ("/", "This is a test server made with coap-proto"),
                ("/example_data", example_data.as_str()),
            ] {
                let out = Command::new("aiocoap-client")
                    .arg(format!("coap://127.0.0.1:{port}{path}"))
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && stdout.contains(expect),
                    "{name}: aiocoap-client {path}: {out:?}"
                );
            }
        }
        assert_eq!(
            report.matches("PASS").count(),
            15,
            "{name}: 14 scenarios and observe"
        );
    }
}

/// `tests/interop/aiocoap_peer.py server` on a free port, ready.
fn aiocoap_server() -> (Peer, u16) {
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
    assert_eq!(ready.trim(), "ready");
    (Peer(child), port)
}

/// libcoap's `coap-server-notls` on a free port, ready.
fn libcoap_server() -> (Peer, u16) {
    let port = free_port();
    let server = Peer(
        Command::new("coap-server-notls")
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-d", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_server(port);
    (server, port)
}

/// Runs a client with `args`; returns exit success, stdout and stderr (libcoap's
/// timestamped log lines left out).
fn run_client(program: &std::path::Path, args: &[String]) -> (bool, Vec<u8>, String) {
    let out = Command::new(program).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains(" WARN ") && !l.contains(" DEBG ") && !l.contains(" INFO "))
        .map(|l| format!("{l}\n"))
        .collect();
    (out.status.success(), out.stdout, stderr)
}

#[test]
fn our_coap_client_takes_libcoaps_flags_against_libcoaps_server() {
    if !available(
        "libcoap (coap-client-notls, coap-server-notls)",
        "which",
        &["coap-client-notls", "coap-server-notls"],
    ) {
        return;
    }
    let (_server, port) = libcoap_server();
    let ours = example("coap-client");
    let theirs = std::path::PathBuf::from("coap-client-notls");
    let base = format!("coap://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("coap-proto-flags-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body.txt");
    let body: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    std::fs::write(&file, &body).unwrap();
    let a = |s: &str| {
        s.replace("{base}", &base)
            .replace("{file}", file.to_str().unwrap())
    };

    // Each flag once, run by both clients in turn against libcoap's server: the same
    // exit status, stdout and stderr (bodies as received, error codes with their
    // diagnostic payload).
    let same_as_libcoap: &[&[&str]] = &[
        &["{base}/"],
        &["-m", "put", "-e", "hello%21", "{base}/example_data"],
        &["{base}/example_data"],
        &["-m", "fetch", "-e", "x", "{base}/example_data"],
        &["-m", "patch", "-e", "x", "{base}/example_data"],
        &["-m", "ipatch", "-e", "x", "{base}/example_data"],
        &[
            "-m",
            "post",
            "-t",
            "json",
            "-e",
            "{}",
            "{base}/example_data",
        ],
        &[
            "-m",
            "put",
            "-f",
            "{file}",
            "-b",
            "64",
            "{base}/example_data",
        ],
        &["-b", "256", "{base}/example_data"],
        &["-b", "2,64", "{base}/example_data"],
        &["-A", "0", "{base}/"],
        &["-O", "2048,0x0102", "{base}/"],
        &["-T", "abc", "{base}/"],
        &["-P", "{base}", "coap://example.com/"],
        &["-H", "5", "-P", "{base}", "coap://example.com/"],
        &["-U", "{base}/"],
        &["-w", "{base}/example_data"],
        &["-G", "2", "{base}/example_data"],
        &["-B", "5", "{base}/"],
        &["-a", "127.0.0.1", "-p", &free_port().to_string(), "{base}/"],
        &["-m", "delete", "{base}/nothing-here"],
        &["{base}/nothing-here"],
    ];
    for args in same_as_libcoap {
        let args: Vec<String> = args.iter().map(|s| a(s)).collect();
        let (ok_ours, out_ours, err_ours) = run_client(&ours, &args);
        let (ok_theirs, out_theirs, err_theirs) = run_client(&theirs, &args);
        assert!(ok_ours, "coap-client {args:?}: {err_ours}");
        assert_eq!(
            (ok_ours, String::from_utf8_lossy(&out_ours), &err_ours),
            (ok_theirs, String::from_utf8_lossy(&out_theirs), &err_theirs),
            "coap-client {args:?}: ours (left) and libcoap's (right) differ"
        );
    }

    // NON, Accept by name: answered like libcoap's (the body is the time: not compared).
    for args in [&["-N", "{base}/time"][..], &["-A", "text", "{base}/time"]] {
        let args: Vec<String> = args.iter().map(|s| a(s)).collect();
        let (ok, out, _) = run_client(&ours, &args);
        assert!(ok && !out.is_empty(), "coap-client {args:?}");
    }
    // -o writes the body (3000 bytes, block-wise) to a file, as libcoap's does.
    let (mine, libcoaps) = (dir.join("ours.out"), dir.join("theirs.out"));
    for (program, to) in [(&ours, &mine), (&theirs, &libcoaps)] {
        let args = [a("-o"), to.display().to_string(), a("{base}/example_data")];
        assert!(run_client(program, &args).0);
    }
    assert_eq!(std::fs::read(&mine).unwrap(), body.as_bytes());
    assert_eq!(
        std::fs::read(&mine).unwrap(),
        std::fs::read(&libcoaps).unwrap()
    );
    // -v 7 logs every message in its Display form; the token is -T's.
    let (ok, _, err) = run_client(&ours, &[a("-v"), a("7"), a("-T"), a("abc"), a("{base}/")]);
    assert!(ok, "{err}");
    assert!(
        err.contains("sent to 127.0.0.1") && err.contains("CON GET"),
        "{err}"
    );
    assert!(
        err.contains("token 0x616263") && err.contains("ACK 2.05 Content"),
        "{err}"
    );
    // -B bounds a CON request too: a silent port gives up after a second, exit 1.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let args = [
        a("-B"),
        a("1"),
        format!("coap://{}/x", silent.local_addr().unwrap()),
    ];
    let (ok, _, err) = run_client(&ours, &args);
    assert!(!ok && err.contains("no response in time"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // -h prints the usage and exits 0.
    let (ok, out, _) = run_client(&ours, &[a("-h")]);
    assert!(ok && String::from_utf8_lossy(&out).contains("usage: coap-client"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Payloads of a `coap-client -s` run: libcoap's clients print notifications back to
/// back, so the time strings are split where they repeat their shape.
fn notifications_of(out: &[u8], sep: &str) -> Vec<String> {
    String::from_utf8_lossy(out)
        .trim()
        .split(sep)
        .filter(|s| !s.is_empty())
        .map(ToString::to_string)
        .collect()
}

#[test]
fn observe_interop_with_libcoap_both_ways() {
    if !available(
        "libcoap (coap-client-notls, coap-server-notls)",
        "which",
        &["coap-client-notls", "coap-server-notls"],
    ) {
        return;
    }
    // Our coap-client -s against libcoap's /time: a notification a second.
    let (_server, port) = libcoap_server();
    let out = Command::new(example("coap-client"))
        .args(["-s", "3", &format!("coap://127.0.0.1:{port}/time")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // libcoap's /time reads like "Dec 01 08:48:47": split where the month repeats.
    let month: String = String::from_utf8_lossy(&out.stdout)
        .chars()
        .take(4)
        .collect();
    let times = notifications_of(&out.stdout, &month);
    assert!(
        (3..=5).contains(&times.len()),
        "our client observing libcoap's /time for 3 s: {times:?}"
    );
    let distinct: std::collections::HashSet<_> = times.iter().collect();
    assert_eq!(distinct.len(), times.len(), "each a newer state: {times:?}");
    // With -o, as libcoap's: every notification appended to the file.
    let file = std::env::temp_dir().join(format!("coap-proto-observe-{port}.txt"));
    let out = Command::new(example("coap-client"))
        .args(["-s", "2", "-o"])
        .arg(&file)
        .arg(format!("coap://127.0.0.1:{port}/time"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let written = std::fs::read(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let times = notifications_of(&written, &month);
    assert!(
        (2..=4).contains(&times.len()),
        "-s 2 -o: every notification in the file: {times:?}"
    );

    // libcoap's coap-client -s against our coap-server and tokio_server.
    for name in ["coap-server", "tokio_server"] {
        let (_ours, port, _log) = our_server(name);
        let out = Command::new("coap-client-notls")
            .args(["-s", "3", &format!("coap://127.0.0.1:{port}/time")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let times = notifications_of(&out.stdout, " UTC");
        assert!(
            (3..=5).contains(&times.len()),
            "libcoap observing {name}'s /time for 3 s: {times:?}"
        );
        let distinct: std::collections::HashSet<_> = times.iter().collect();
        assert_eq!(distinct.len(), times.len(), "{times:?}");
    }
}

#[test]
fn our_client_observes_an_aiocoap_resource() {
    if !available("aiocoap (pip)", "python3", &["-c", "import aiocoap"]) {
        return;
    }
    let (_server, port) = aiocoap_server();
    let mut c = Client::connect(("127.0.0.1", port)).unwrap();
    let mut counts = Vec::new();
    c.observe(
        &Request::get("/counter"),
        Some(Duration::from_secs(5)),
        |n| {
            counts.push(n.payload_str().unwrap().parse::<u32>().unwrap());
            counts.len() < 5
        },
    )
    .unwrap();
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "newer and newer: {counts:?}"
    );
}

#[test]
fn ended_observations_are_deregistered_at_libcoaps_server() {
    // RFC 7641 §3.6: however an observation of ours ends, libcoap's server is told with
    // a GET with Observe: 1 and removes the subscription at once (it logs so at -v 7),
    // rather than keeping it until a notification is rejected.
    if !available(
        "libcoap (coap-server-notls)",
        "which",
        &["coap-server-notls"],
    ) {
        return;
    }
    let port = free_port();
    let mut child = Command::new("coap-server-notls")
        .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-v", "7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut log = Log::new_out(child.stdout.take().unwrap());
    let _server = Peer(child);
    wait_for_server(port);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // The server logs each request it gets; a deregistration, not a RST to a
    // notification, must be what removed the subscription.
    let removed = |log: &mut Log| {
        let start = Instant::now();
        let mut lines = Vec::new();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(l) = log.0.recv_timeout(Duration::from_millis(100)) {
                lines.push(l);
            }
            let dereg = lines
                .iter()
                .position(|l| l.contains("c:GET") && l.contains("Observe:1,"));
            if dereg.is_some_and(|i| {
                lines[i..]
                    .iter()
                    .any(|l| l.contains("removed subscription"))
            }) {
                return true;
            }
        }
        false
    };
    // 1. The blocking client's duration ends.
    let mut c = Client::connect(addr).unwrap();
    let mut n = 0;
    c.observe(
        &Request::get("/time"),
        Some(Duration::from_millis(1500)),
        |_| {
            n += 1;
            true
        },
    )
    .unwrap();
    assert!(n >= 2, "{n} notifications");
    assert!(removed(&mut log), "duration end: subscription removed");
    // 2. Its callback returns false.
    let mut n = 0;
    c.observe(
        &Request::get("/time"),
        Some(Duration::from_secs(10)),
        |_| {
            n += 1;
            n < 2
        },
    )
    .unwrap();
    assert!(removed(&mut log), "callback false: subscription removed");
    // 3. A tokio `Observation` is dropped.
    #[cfg(feature = "tokio")]
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = coap_proto::net::tokio::Client::connect(addr).await.unwrap();
            let mut o = c.observe(Request::get("/time")).await.unwrap();
            assert!(o.next().await.is_some());
            assert!(o.next().await.is_some());
            drop(o);
            // The client's driver sends the deregistration and takes its answer.
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
        assert!(
            removed(&mut log),
            "Observation dropped: subscription removed"
        );
    }
}
