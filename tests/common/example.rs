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
