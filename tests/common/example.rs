//! The `coap-server` example as a child process on a free loopback port, for tests that
//! need a real server binary.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running example server; killed when dropped.
pub struct ExampleServer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a built example (tests run from target/<profile>/deps).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests with --all-features",
        path.display()
    );
    path
}

/// Starts `coap-server` on 127.0.0.1 with `args`, once it says it listens.
#[allow(dead_code)]
pub fn start_coap_server(args: &[&str]) -> ExampleServer {
    start_example_server("coap-server", args)
}

/// Starts the server example `name` (`coap-server` or `tokio_server`, which take the
/// same flags) on 127.0.0.1 with `args`, once it says it listens.
pub fn start_example_server(name: &str, args: &[&str]) -> ExampleServer {
    // A port free a moment ago may be taken by a test running beside this one before
    // the child binds it: then another port, a few times.
    let mut line = String::new();
    for _ in 0..5 {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(example(name))
            .args(["-A", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        line.clear();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.contains("listening") {
            return ExampleServer {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
        }
        let _ = child.wait();
        if !line.contains("in use") {
            break;
        }
    }
    panic!("{name} did not start: {line}");
}

/// Proves `s`'s address to the server at `to` (RFC 9175 §2.4): a GET of
/// `/example_data`, too large for an unverified peer, is answered 4.01 with an Echo
/// value; the same GET with that value gets the content, and the server counts the
/// address as verified from then on. Returns the Echo value.
pub fn prove_address(s: &UdpSocket, to: SocketAddr) -> Vec<u8> {
    use coap_proto::wire::{Code, Message, MessageBuilder, OptionNumber, Type};
    let get = |mid: u16, echo: Option<&[u8]>| {
        let mut buf = [0u8; 64];
        let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, mid).unwrap();
        b.token(&[0xec]).unwrap();
        b.option(OptionNumber::URI_PATH, b"example_data").unwrap();
        if let Some(v) = echo {
            b.echo(v).unwrap();
        }
        b.finish().to_vec()
    };
    let first = exchange(s, to, &get(0xec00, None), 0xec00);
    let m = Message::parse(&first).unwrap();
    assert_eq!(
        m.code(),
        Code::UNAUTHORIZED,
        "an unverified peer is challenged"
    );
    let echo = m.echo().unwrap().expect("with an Echo value").to_vec();
    let again = exchange(s, to, &get(0xec01, Some(&echo)), 0xec01);
    assert_eq!(Message::parse(&again).unwrap().code(), Code::CONTENT);
    echo
}

/// Sends `bytes` from `s` to `to` and returns the answer to message ID `mid` (other
/// datagrams skipped; the socket's read timeout bounds the wait).
pub fn exchange(s: &UdpSocket, to: SocketAddr, bytes: &[u8], mid: u16) -> Vec<u8> {
    s.send_to(bytes, to).unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..20 {
        let (n, _) = s.recv_from(&mut buf).expect("an answer");
        if coap_proto::wire::Message::parse(&buf[..n]).is_ok_and(|m| m.message_id() == mid) {
            return buf[..n].to_vec();
        }
    }
    panic!("no answer to MID {mid}");
}
